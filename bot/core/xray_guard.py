"""Is this plausibly a chest X-ray? A cheap guard that runs before any classifier.

Classifiers answer every image with a confident label (Rekognition calls a cat photo "Normal"),
so the intake calls `check_chest_xray` on the decoded image first. It looks at a 128 px
thumbnail (well under a millisecond) and rejects what is clearly something else:

- colour: more than 5% of the pixels strongly coloured (X-rays are gray; a faint tint passes);
- a page: more than 45% of the pixels near white (documents, most screenshots);
- flat graphics: more than half of the mid-gray neighbours exactly equal (user interfaces,
  charts, drawings; film grain and JPEG noise make that rare in an X-ray);
- blank: almost no contrast;
- an extreme aspect ratio (more than 2.5:1).

The limits leave a wide margin around what real chest films measure (see bench/check_guard.py
and docs/benchmarks.md): all of the dataset's originals and train224 images pass.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from bot.core.errors import NotAChestXray

THUMBNAIL = 128
MAX_ASPECT = 2.5
COLOUR_CHROMA = 40  # max - min channel, out of 255
MAX_COLOUR_FRACTION = 0.05
WHITE_LEVEL = 220
MAX_WHITE_FRACTION = 0.45
MAX_FLAT_FRACTION = 0.5
MIN_STD = 12.0

_REPLY = (
    "This doesn't look like a chest X-ray ({reason}), so I won't label it. "
    "Please post a frontal chest X-ray as a PNG or JPEG."
)


def measure(image: Image.Image) -> dict[str, float]:
    """The guard's measurements of an image (for the guard, its benchmark and the logs)."""
    width, height = image.size
    thumb = image if image.mode in ("L", "RGB") else image.convert("RGB")
    thumb = thumb.copy()
    thumb.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.BILINEAR, reducing_gap=2.0)
    pixels = np.asarray(thumb, dtype=np.int32)
    if pixels.ndim == 3:
        chroma = pixels.max(axis=2) - pixels.min(axis=2)
        colour = float(np.mean(chroma > COLOUR_CHROMA))
        gray = (pixels[..., 0] * 299 + pixels[..., 1] * 587 + pixels[..., 2] * 114) // 1000
    else:
        colour = 0.0
        gray = pixels
    equal = np.diff(gray, axis=1) == 0
    mid = (gray[:, 1:] > 8) & (gray[:, 1:] < 247)
    return {
        "aspect": max(width, height) / max(min(width, height), 1),
        "colour": colour,
        "white": float(np.mean(gray > WHITE_LEVEL)),
        "flat": float((equal & mid).sum() / max(int(mid.sum()), 1)),
        "std": float(gray.std()),
    }


def rejection(found: dict[str, float]) -> str | None:
    """Why these measurements are not a chest X-ray, or None when they may be one."""
    if found["aspect"] > MAX_ASPECT:
        return f"its shape is too elongated, {found['aspect']:.1f}:1"
    if found["colour"] > MAX_COLOUR_FRACTION:
        return "it's in colour"
    if found["white"] > MAX_WHITE_FRACTION:
        return "it's mostly white, like a document or a screenshot"
    if found["std"] < MIN_STD:
        return "it's almost blank"
    if found["flat"] > MAX_FLAT_FRACTION:
        return "it has flat areas of colour, like a screenshot or a drawing"
    return None


def check_chest_xray(image: Image.Image) -> None:
    """Raise `NotAChestXray` when the decoded image is clearly not a chest X-ray."""
    found = measure(image)
    reason = rejection(found)
    if reason:
        detail = "not a chest X-ray: " + ", ".join(f"{k}={v:.3f}" for k, v in found.items())
        raise NotAChestXray(_REPLY.format(reason=reason), detail=detail)
