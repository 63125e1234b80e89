"""THE preprocessing of the local model, shared by training and inference.

`preprocess(image)` = `standardize(prepare(image))[None, None]`:

1. `prepare`: any decoded PIL image -> grayscale, a thin border trimmed (film edges, burnt-in
   markers), squashed to `INPUT_SIZE` x `INPUT_SIZE` ignoring the aspect ratio (the training
   images were squashed to 224 x 224 the same way), float32 in 0..1.
2. `standardize`: per-image zero mean and unit variance. It removes the brightness and contrast
   differences between X-ray machines and exports, which is what shifts most between hospitals
   and between this dataset's training and test splits.

Training inserts its augmentation between the two steps (`standardize` works on numpy arrays
and on torch tensors alike), and validates on exactly `preprocess`.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from PIL import Image

INPUT_SIZE = 224
BORDER = 0.04  # fraction trimmed from each side before resizing
MAX_SIDE = 384  # decode no larger: the short side still has >= INPUT_SIZE px up to 1.6:1
EPS = 1e-6

ArrayLike = TypeVar("ArrayLike")  # numpy.ndarray or torch.Tensor


def prepare(image: Image.Image, size: int = INPUT_SIZE) -> np.ndarray:
    """A decoded image as a `size` x `size` float32 grayscale array in 0..1."""
    gray = image if image.mode == "L" else image.convert("L")
    width, height = gray.size
    box = (width * BORDER, height * BORDER, width * (1 - BORDER), height * (1 - BORDER))
    resized = gray.resize((size, size), Image.Resampling.BILINEAR, box=box)
    return np.asarray(resized, dtype=np.float32) * np.float32(1 / 255)


def standardize(pixels: ArrayLike) -> ArrayLike:
    """Zero mean, unit variance over the last two axes (one image, or a batch of them).

    Written with operators only, so the same code runs on numpy arrays and torch tensors.
    """
    mean = pixels.mean(axis=(-2, -1), keepdims=True)  # type: ignore[attr-defined]
    centred = pixels - mean  # type: ignore[operator]
    var = (centred * centred).mean(axis=(-2, -1), keepdims=True)
    return centred / (var + EPS) ** 0.5


def preprocess(image: Image.Image) -> np.ndarray:
    """A decoded PIL image ("L" or "RGB", any size) -> float32 NCHW array (1, 1, 224, 224)."""
    return standardize(prepare(image))[None, None].astype(np.float32, copy=False)
