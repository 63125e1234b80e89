"""Decoding and normalising uploads with Pillow (DICOM with pydicom): safely, and no larger than
the classifier needs.

Decoding is the floor of the bot's per-image overhead, so JPEGs are decoded in draft mode (the
decoder's DCT scaling gives 1/2, 1/4 or 1/8 size almost for free) straight to the size the
classifier asked for. DICOM is recognised by its content, whatever the file is called, and
becomes pixels here: what leaves this module (for either classifier, or re-encoded for
Rekognition) never carries the file's tags.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

from bot.core.dicom import decode_dicom, is_dicom
from bot.core.errors import CorruptImage, ImageOutOfLimits, UnsupportedFile

# Formats Pillow decodes that we accept; everything is converted to JPEG or PNG before it
# reaches Rekognition, which takes only those two.
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "TIFF", "BMP", "WEBP", "MPO"})
MIN_SIDE = 64  # Rekognition's minimum, and below it nothing useful is visible anyway
REKOGNITION_MAX_BYTES = 4 * 1024 * 1024
REKOGNITION_MAX_SIDE = 4096


def sniff_kind(data: bytes) -> str | None:
    """Name well-known non-image payloads so replies can be specific."""
    head = data[:1024].lstrip()
    if head.startswith(b"%PDF"):
        return "a PDF"
    if is_dicom(data):
        return "DICOM"
    if head[:15].lower().startswith((b"<!doctype html", b"<html")):
        return "a web page"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypmsf1"):
        return "HEIC"
    return None


def decode(data: bytes, *, max_side: int, max_pixels: int) -> Image.Image:
    """Decode upload bytes into an upright 8-bit "L" or "RGB" image, at most `max_side` a side.

    Raises `UnsupportedFile`, `CorruptImage` or `ImageOutOfLimits` with a reply for the user.
    """
    kind = sniff_kind(data)
    if kind == "DICOM":
        image = decode_dicom(data, max_pixels=max_pixels)
        _check_size(*image.size, max_pixels)
        return _fit(image, max_side)
    if kind:
        raise UnsupportedFile(
            f"This looks like {kind}, not an image. Please post a PNG or JPEG X-ray."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageOutOfLimits("This image has too many pixels for me to open safely.") from None
    except (OSError, SyntaxError, ValueError):  # UnidentifiedImageError is an OSError
        raise CorruptImage(
            "I couldn't read this image: the file seems damaged or isn't really an image."
        ) from None

    if image.format not in ACCEPTED_FORMATS:
        raise UnsupportedFile(
            f"{image.format or 'This'} images aren't supported. Please post a PNG or JPEG X-ray."
        )
    _check_size(*image.size, max_pixels)

    try:
        if image.format in ("JPEG", "MPO"):
            target_mode = "L" if image.mode == "L" else "RGB"
            image.draft(target_mode, (max_side, max_side))
        image.load()
        image = ImageOps.exif_transpose(image)
        image = to_8bit(image)
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptImage(
            "I couldn't read this image: the file seems damaged or truncated.", detail=str(exc)
        ) from None

    return _fit(image, max_side)


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageOutOfLimits(
            f"This image is {width}×{height} pixels, more than I can safely open. "
            "Please post a smaller export."
        )
    if min(width, height) < MIN_SIDE:
        raise ImageOutOfLimits(
            f"This image is only {width}×{height} pixels; I need at least {MIN_SIDE} a side."
        )


def _fit(image: Image.Image, max_side: int) -> Image.Image:
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return image


def to_8bit(image: Image.Image) -> Image.Image:
    """Bring any Pillow mode to "L" or "RGB"; 16-bit and float data are stretched to full range."""
    if image.mode in ("L", "RGB"):
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(image, dtype=np.float32)
        low, high = float(pixels.min()), float(pixels.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        return Image.fromarray(((pixels - low) * scale).astype(np.uint8), mode="L")
    if image.mode in ("1", "LA", "La"):
        return image.convert("L")
    if image.mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB").convert("RGB")
    return image.convert("RGB")


def encode_for_rekognition(image: Image.Image) -> bytes:
    """JPEG bytes within Rekognition's inference limits (≤ 4 MB, 64–4096 px a side)."""
    if max(image.size) > REKOGNITION_MAX_SIDE:
        image = image.copy()
        image.thumbnail((REKOGNITION_MAX_SIDE, REKOGNITION_MAX_SIDE), Image.Resampling.BILINEAR)
    for quality in (90, 80, 70, 55):
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        if buffer.tell() <= REKOGNITION_MAX_BYTES:
            return buffer.getvalue()
    image = image.copy()
    image.thumbnail((2048, 2048), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()
