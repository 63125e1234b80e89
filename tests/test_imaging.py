"""Decoding uploads: formats, orientation, bit depth, size limits and decompression bombs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bot.core.errors import CorruptImage, ImageOutOfLimits, UnsupportedFile
from bot.core.imaging import (
    REKOGNITION_MAX_BYTES,
    REKOGNITION_MAX_SIDE,
    decode,
    encode_for_rekognition,
)
from tests.synthetic import chest_xray, jpeg_bytes, png16_bytes, png_bytes

LIMIT = 60_000_000


def test_jpeg_is_decoded_in_draft_mode_no_larger_than_needed():
    data = jpeg_bytes(chest_xray(size=(2000, 2400)))
    image = decode(data, max_side=256, max_pixels=LIMIT)
    assert image.mode == "L"
    assert max(image.size) == 256
    assert image.size == (213, 256)  # aspect ratio kept


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(orientation):
    upright = chest_xray(size=(300, 500))
    image = decode(
        jpeg_bytes(upright, exif_orientation=orientation), max_side=1000, max_pixels=LIMIT
    )
    assert image.size == (300, 500)
    difference = np.abs(np.asarray(image, np.int16) - np.asarray(upright, np.int16)).mean()
    assert difference < 3  # the same picture, only JPEG noise apart


def test_16_bit_png_is_stretched_not_clipped():
    image = decode(png16_bytes(chest_xray(size=(400, 400))), max_side=1000, max_pixels=LIMIT)
    assert image.mode == "L"
    low, high = image.getextrema()
    assert low < 40 and high > 200


def test_12_bit_data_in_a_16_bit_png_uses_the_full_range():
    pixels = (np.asarray(chest_xray(size=(256, 256)), np.uint16) * 16).astype(np.uint16)  # 0..4080
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    image = decode(buffer.getvalue(), max_side=512, max_pixels=LIMIT)
    assert image.getextrema()[1] == 255


def test_rgba_and_palette_images_become_rgb():
    rgba = chest_xray(size=(200, 200)).convert("RGBA")
    assert decode(png_bytes(rgba), max_side=512, max_pixels=LIMIT).mode == "RGB"
    palette = chest_xray(size=(200, 200)).convert("P")
    assert decode(png_bytes(palette), max_side=512, max_pixels=LIMIT).mode in ("RGB", "L")


def test_too_many_pixels_is_refused_before_decoding():
    data = png_bytes(Image.new("L", (3000, 3000)))
    with pytest.raises(ImageOutOfLimits, match="more than I can safely open"):
        decode(data, max_side=512, max_pixels=4_000_000)


def test_pillow_decompression_bomb_is_refused():
    data = png_bytes(Image.new("1", (12_000, 12_000)))  # tiny file, 144 Mpx
    with pytest.raises(ImageOutOfLimits):
        decode(data, max_side=512, max_pixels=LIMIT)


def test_truncated_jpeg_is_corrupt():
    data = jpeg_bytes(chest_xray(size=(600, 600)))
    with pytest.raises(CorruptImage):
        decode(data[: len(data) // 2], max_side=512, max_pixels=LIMIT)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"%PDF-1.4 ...", "looks like a PDF"),
        (b"\0" * 128 + b"DICM" + b"\0" * 32, "DICOM"),
        (b"<!DOCTYPE html><html></html>", "a web page"),
        (b"\0\0\0\x18ftypheic" + b"\0" * 64, "HEIC"),
    ],
)
def test_known_non_images_are_named(data, message):
    with pytest.raises(UnsupportedFile, match=message):
        decode(data, max_side=512, max_pixels=LIMIT)


def test_gif_is_an_unsupported_format():
    buffer = io.BytesIO()
    chest_xray(size=(100, 100)).save(buffer, format="GIF")
    with pytest.raises(UnsupportedFile, match="GIF images aren't supported"):
        decode(buffer.getvalue(), max_side=512, max_pixels=LIMIT)


def test_rekognition_encoding_respects_its_limits():
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (5000, 4500), np.uint8))
    data = encode_for_rekognition(noisy)
    assert len(data) <= REKOGNITION_MAX_BYTES
    encoded = Image.open(io.BytesIO(data))
    assert encoded.format == "JPEG"
    assert max(encoded.size) <= REKOGNITION_MAX_SIDE and min(encoded.size) >= 64
