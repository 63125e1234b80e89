"""THE preprocessing of the local model, shared by training and inference.

`preprocess(image)` = `standardize(equalize(prepare(image)))[None, None]`:

1. `prepare`: any decoded PIL image -> grayscale, a thin border trimmed (film edges, burnt-in
   markers), squashed to `INPUT_SIZE` x `INPUT_SIZE` ignoring the aspect ratio (the training
   images were squashed to 224 x 224 the same way), float32 in 0..1.
2. `equalize` (models whose card says so): histogram equalisation, each pixel replaced by its
   rank in the image (mid-rank, 256 levels). Any monotone change of exposure, gamma or window
   gives the same result, so films processed with different curves look alike to the model.
3. `standardize`: per-image zero mean and unit variance. It removes the brightness and contrast
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


LEVELS = 256


def equalize(pixels: np.ndarray) -> np.ndarray:
    """Histogram equalisation of one image or a batch (..., H, W) in 0..1: each pixel becomes
    the mid-rank of its level (256 levels) among the image's pixels, in 0..1. An inverted image
    comes out as the inverse of the equalised one."""
    pixels = np.asarray(pixels, dtype=np.float32)
    flat = pixels.reshape(-1, pixels.shape[-2] * pixels.shape[-1])
    levels = np.clip(np.rint(flat * (LEVELS - 1)), 0, LEVELS - 1).astype(np.int64)
    offsets = np.arange(len(flat))[:, None] * LEVELS
    counts = np.bincount((levels + offsets).ravel(), minlength=len(flat) * LEVELS)
    counts = counts.reshape(len(flat), LEVELS).astype(np.float64)
    below = np.cumsum(counts, axis=1) - counts  # pixels strictly darker than each level
    rank = (below + 0.5 * counts) / flat.shape[1]
    out = np.take_along_axis(rank, levels, axis=1).astype(np.float32)
    return out.reshape(pixels.shape)


def preprocess(image: Image.Image, *, equalized: bool = False) -> np.ndarray:
    """A decoded PIL image ("L" or "RGB", any size) -> float32 NCHW array (1, 1, 224, 224).
    `equalized`: the model was trained on equalised images (its card says so)."""
    pixels = prepare(image)
    if equalized:
        pixels = equalize(pixels)
    return standardize(pixels)[None, None].astype(np.float32, copy=False)
