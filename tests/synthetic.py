"""Synthetic, seeded test images: no real X-ray is ever needed by the tests.

Generators (pure Pillow/numpy, deterministic for a given seed):

- `chest_xray`: a grayscale ("L") frontal chest film: dark background, bright mediastinum and
  spine, two darker lung fields crossed by rib-like bands, film noise; `pneumonia=True` adds
  hazy bright consolidation patches in one lung. It passes the not-an-X-ray guard.
- `color_photo`: a saturated RGB "photo" (colour gradients, blobs, texture).
- `document`: a scanned page: white with lines of black text-like strokes.
- `screenshot`: a user interface: flat colour blocks, bars and buttons.

Encoders return file bytes as an upload would carry them: `jpeg_bytes` (optionally with an EXIF
orientation tag, the pixels stored so that an EXIF-aware viewer shows the image upright),
`png_bytes`, `png16_bytes` (16-bit grayscale) and `rgb_xray_jpeg_bytes` (a gray X-ray saved as an
RGB JPEG, like the dataset's train224 folder).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = [
    "chest_xray",
    "color_photo",
    "document",
    "jpeg_bytes",
    "png16_bytes",
    "png_bytes",
    "rgb_xray_jpeg_bytes",
    "screenshot",
]


def _ellipse(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, rx: float, ry: float):
    """Soft-edged ellipse mask in 0..1."""
    d = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
    return np.clip((1.0 - d) * 4.0, 0.0, 1.0)


def chest_xray(seed: int = 0, size: tuple[int, int] = (512, 512), pneumonia: bool = False):
    """A synthetic frontal chest X-ray, mode "L", `size` = (width, height)."""
    rng = np.random.default_rng(seed)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    xx /= width
    yy /= height
    jitter = rng.uniform(-0.02, 0.02, size=6)

    img = np.full((height, width), 25.0, np.float32)  # dark background
    body = _ellipse(xx, yy, 0.5 + jitter[0], 0.55, 0.46, 0.55)
    img += body * 105.0  # soft tissue
    img += _ellipse(xx, yy, 0.5, 0.5, 0.07, 0.6) * 95.0  # mediastinum and spine
    img += np.exp(-(((xx - 0.5) / 0.025) ** 2)) * body * 40.0  # vertebrae line
    lungs = np.zeros_like(img)
    for side, cx in ((0, 0.3 + jitter[1]), (1, 0.7 + jitter[2])):
        lung = _ellipse(xx, yy, cx, 0.47 + jitter[3 + side], 0.15, 0.3)
        lungs = np.maximum(lungs, lung)
    ribs = 0.5 + 0.5 * np.sin((yy * 14.0 + np.abs(xx - 0.5) * 3.0) * np.pi + jitter[5] * 50)
    img -= lungs * (70.0 - ribs * 22.0)  # air is dark, ribs brighter bands
    img += _ellipse(xx, yy, 0.56, 0.62, 0.09, 0.08) * 35.0  # heart shadow

    if pneumonia:
        cx = (0.3 if rng.random() < 0.5 else 0.7) + rng.uniform(-0.04, 0.04)
        for _ in range(3):
            px = cx + rng.uniform(-0.07, 0.07)
            py = rng.uniform(0.45, 0.65)
            r = rng.uniform(0.05, 0.1)
            img += np.exp(-(((xx - px) ** 2 + (yy - py) ** 2) / (2 * r * r))) * 55.0 * lungs

    img += rng.normal(0.0, 6.0, size=img.shape).astype(np.float32)  # film grain
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="L")
    return out.filter(ImageFilter.GaussianBlur(radius=max(width, height) / 400))


def color_photo(seed: int = 0, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A saturated RGB "photo": colour gradients, coloured blobs and texture."""
    rng = np.random.default_rng(seed)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    xx /= width
    yy /= height
    img = np.stack([200 * xx + 40, 160 * (1 - yy) + 60, 220 * (1 - xx) * yy + 20], axis=-1).astype(
        np.float32
    )
    for _ in range(8):
        colour = rng.uniform(0, 255, size=3)
        blob = _ellipse(xx, yy, *rng.uniform(0.1, 0.9, 2), *rng.uniform(0.05, 0.25, 2))
        img = img * (1 - blob[..., None]) + colour * blob[..., None]
    img += rng.normal(0, 10, size=img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="RGB")


def document(size: tuple[int, int] = (850, 1100), seed: int = 0) -> Image.Image:
    """A scanned page, mode "L": white paper, lines of black text-like strokes."""
    rng = np.random.default_rng(seed)
    width, height = size
    page = Image.new("L", size, 245)
    draw = ImageDraw.Draw(page)
    margin = width // 10
    line_height = max(height // 45, 6)
    for top in range(margin, height - margin, line_height * 2):
        x = margin
        right = width - margin - int(rng.integers(0, width // 4))
        while x < right:
            word = int(rng.integers(line_height, line_height * 4))
            for cx in range(x, min(x + word, right), max(line_height // 2, 3)):
                draw.rectangle(
                    [cx, top, cx + max(line_height // 3, 2), top + line_height],
                    fill=int(rng.integers(0, 60)),
                )
            x += word + line_height
    noisy = np.asarray(page, np.float32) + rng.normal(0, 3, size=(height, width))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), mode="L")


def screenshot(size: tuple[int, int] = (1280, 800)) -> Image.Image:
    """A user interface, mode "RGB": a sidebar, a top bar, panels, buttons and text rows."""
    width, height = size
    shot = Image.new("RGB", size, (248, 248, 250))
    draw = ImageDraw.Draw(shot)
    draw.rectangle([0, 0, width // 5, height], fill=(63, 14, 64))  # sidebar
    draw.rectangle([0, 0, width, height // 16], fill=(50, 50, 60))  # top bar
    for row in range(6):
        top = height // 8 + row * height // 8
        left = width // 5 + 30
        draw.rectangle([left, top, left + 40, top + 40], fill=(30 + 35 * row, 120, 200))
        for line in range(2):
            y = top + 8 + line * 18
            draw.rectangle([left + 60, y, left + 60 + 500 - line * 200, y + 8], fill=(40, 40, 40))
    draw.rectangle([width - 220, height - 90, width - 40, height - 40], fill=(0, 122, 90))
    return shot


# EXIF orientation -> the transpose that stores an upright image under that tag (the inverse
# of what `ImageOps.exif_transpose` applies when reading it).
_STORE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def jpeg_bytes(img: Image.Image, quality: int = 90, exif_orientation: int | None = None) -> bytes:
    """JPEG bytes. With `exif_orientation` (2..8) the pixels are stored transposed and tagged so
    that honouring the tag (as `ImageOps.exif_transpose` does) gives back `img` upright."""
    buffer = io.BytesIO()
    if exif_orientation and exif_orientation != 1:
        stored = img.transpose(_STORE_FOR_ORIENTATION[exif_orientation])
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        stored.save(buffer, format="JPEG", quality=quality, exif=exif.tobytes())
    else:
        img.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def png_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def png16_bytes(img: Image.Image) -> bytes:
    """A 16-bit grayscale PNG (mode I;16) of a gray image, values scaled 0..255 -> 0..65535."""
    pixels = np.asarray(img.convert("L"), np.uint16) * 257
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def rgb_xray_jpeg_bytes(
    seed: int = 0,
    size: tuple[int, int] = (224, 224),
    pneumonia: bool = False,
    quality: int = 90,
) -> bytes:
    """A gray chest X-ray stored as an RGB JPEG, like the dataset's train224 images."""
    return jpeg_bytes(chest_xray(seed, size, pneumonia).convert("RGB"), quality=quality)
