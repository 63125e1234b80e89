"""Class activation map (CAM) overlays: where in the X-ray the model saw its evidence.

The network's `cam` output (14 x 14) covers the region `preprocess` looked at: the image
without its trimmed border. `cam_to_map` stretches it to 0..1 and maps it back onto that
region of the full image; `heatmap_png` colours it (blue, low, to red, high) over the gray X-ray, fading where
the map is low so the anatomy stays readable, and encodes a PNG at the image's own size.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from bot.ml.preprocess import BORDER

# A "jet"-like ramp as (position, RGB) stops, interpolated to 256 entries.
_STOPS = [
    (0.0, (0, 0, 128)),
    (0.15, (0, 0, 255)),
    (0.4, (0, 255, 255)),
    (0.6, (255, 255, 0)),
    (0.85, (255, 0, 0)),
    (1.0, (128, 0, 0)),
]
_POS = np.array([p for p, _ in _STOPS])
COLORMAP = np.stack(
    [np.interp(np.linspace(0, 1, 256), _POS, [c[i] for _, c in _STOPS]) for i in range(3)], 1
).astype(np.float32)


def cam_to_map(cam: np.ndarray, size: tuple[int, int], border: float = BORDER) -> np.ndarray:
    """A (h, w) CAM min-max stretched to 0..1 and resized onto an image of `size` (width,
    height). The map covers what the network saw; the trimmed border continues its edge.
    Returns float32 (height, width)."""
    cam = np.asarray(cam, dtype=np.float32)
    low, high = float(cam.min()), float(cam.max())
    unit = (cam - low) / (high - low) if high - low > 1e-6 else np.zeros_like(cam)
    width, height = size
    left, top = round(width * border), round(height * border)
    inner = (max(width - 2 * left, 1), max(height - 2 * top, 1))
    resized = np.asarray(Image.fromarray(unit, mode="F").resize(inner, Image.Resampling.BILINEAR))
    pad = ((top, height - top - inner[1]), (left, width - left - inner[0]))
    return np.clip(np.pad(resized, pad, mode="edge"), 0.0, 1.0).astype(np.float32)


def overlay(image: Image.Image, heat: np.ndarray, alpha: float = 0.6) -> Image.Image:
    """The gray image with `heat` (0..1, image-sized) coloured over it, RGB."""
    gray = np.asarray(image.convert("L"), dtype=np.float32)[..., None]
    colour = COLORMAP[np.round(heat * 255).astype(np.uint8)]
    weight = alpha * np.clip((heat - 0.4) / 0.4, 0.0, 1.0)[..., None]  # low: plain X-ray
    blended = gray * (1 - weight) + colour * weight
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8), mode="RGB")


def heatmap_png(image: Image.Image, cam: np.ndarray, *, alpha: float = 0.6) -> bytes:
    """PNG bytes of the CAM overlaid on `image`, at the image's size."""
    result = overlay(image, cam_to_map(cam, image.size), alpha)
    buffer = io.BytesIO()
    result.save(buffer, format="PNG", compress_level=1)  # fast; ~140 KB at 384 px
    return buffer.getvalue()
