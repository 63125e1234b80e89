"""The one preprocessing function: every kind of upload ends up the same network input."""

import io

import numpy as np
import pytest
from PIL import Image

from bot.core.imaging import decode
from bot.ml.preprocess import INPUT_SIZE, MAX_SIDE, prepare, preprocess, standardize
from tests import synthetic

XRAY = synthetic.chest_xray(4, size=(640, 480), pneumonia=True)


def network_input(data: bytes) -> np.ndarray:
    """What the bot feeds the model for upload bytes: decode, then preprocess."""
    return preprocess(decode(data, max_side=MAX_SIDE, max_pixels=60_000_000))


def test_shape_dtype_and_standardization():
    x = preprocess(XRAY)
    assert x.shape == (1, 1, INPUT_SIZE, INPUT_SIZE)
    assert x.dtype == np.float32
    assert abs(float(x.mean())) < 1e-4
    assert abs(float(x.std()) - 1.0) < 1e-3


def test_prepare_is_gray_0_to_1_and_squashes_any_aspect_ratio():
    for size in [(640, 480), (300, 900), (INPUT_SIZE, INPUT_SIZE)]:
        pixels = prepare(synthetic.chest_xray(1, size=size))
        assert pixels.shape == (INPUT_SIZE, INPUT_SIZE)
        assert pixels.min() >= 0.0 and pixels.max() <= 1.0


def test_rgb_and_gray_give_the_same_input():
    assert np.allclose(preprocess(XRAY), preprocess(XRAY.convert("RGB")), atol=1e-5)


def test_png_is_lossless():
    small = synthetic.chest_xray(4, size=(MAX_SIDE, 300))  # decoded without resizing
    assert np.allclose(network_input(synthetic.png_bytes(small)), preprocess(small), atol=1e-5)


def test_decoding_at_max_side_changes_the_input_very_little():
    diff = np.abs(network_input(synthetic.png_bytes(XRAY)) - preprocess(XRAY))
    assert diff.mean() < 0.05


def test_jpeg_is_close_to_the_original():
    diff = np.abs(network_input(synthetic.jpeg_bytes(XRAY, quality=90)) - preprocess(XRAY))
    assert diff.mean() < 0.05


def test_rgb_jpeg_like_train224_is_close_to_the_gray_original():
    data = synthetic.rgb_xray_jpeg_bytes(seed=4, size=(224, 224), pneumonia=True)
    small = synthetic.chest_xray(4, size=(224, 224), pneumonia=True)
    assert decode(data, max_side=MAX_SIDE, max_pixels=10**8).mode == "RGB"
    assert np.abs(network_input(data) - preprocess(small)).mean() < 0.05


def test_16_bit_png_matches_8_bit():
    data = synthetic.png16_bytes(XRAY)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    assert np.abs(network_input(data) - preprocess(XRAY)).max() < 0.05


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_jpeg_is_turned_upright(orientation):
    upright = network_input(synthetic.jpeg_bytes(XRAY))
    rotated = synthetic.jpeg_bytes(XRAY, exif_orientation=orientation)
    assert np.abs(network_input(rotated) - upright).mean() < 0.05
    # Without honouring the tag the input would be very different.
    raw = Image.open(io.BytesIO(rotated))
    assert np.abs(preprocess(raw) - upright).mean() > 0.3


def test_large_uploads_are_decoded_no_larger_than_needed():
    big = synthetic.chest_xray(0, size=(2400, 2000))
    image = decode(synthetic.jpeg_bytes(big), max_side=MAX_SIDE, max_pixels=60_000_000)
    assert max(image.size) <= MAX_SIDE
    assert min(image.size) >= INPUT_SIZE * 0.8  # still enough pixels for the network
    assert np.abs(preprocess(image) - preprocess(big)).mean() < 0.1


def test_standardize_handles_batches_and_constant_images():
    batch = np.stack([prepare(XRAY), np.full((INPUT_SIZE, INPUT_SIZE), 0.5, np.float32)])
    out = standardize(batch)
    assert out.shape == batch.shape
    assert np.allclose(out[0], standardize(batch[0]))
    assert np.all(np.isfinite(out[1])) and np.allclose(out[1], 0.0)


def test_brightness_and_contrast_changes_are_removed():
    pixels = prepare(XRAY)
    assert np.allclose(standardize(pixels * 0.6 + 0.2), standardize(pixels), atol=1e-3)


def test_equalisation_undoes_any_monotone_exposure_change():
    import numpy as np

    from bot.ml.preprocess import equalize

    film = np.asarray(synthetic.chest_xray(0, size=(224, 224)), dtype=np.float32) / 255
    darker = np.round(255 * film**2.2) / 255  # another tone curve, same ordering
    assert np.corrcoef(equalize(film).ravel(), equalize(darker).ravel())[0, 1] > 0.99
    assert (
        np.abs(equalize(1 - film) - (1 - equalize(film))).max() < 1e-6
    )  # inverted in, inverted out
    batch = np.stack([film, darker])[:, None]
    assert np.array_equal(equalize(batch)[1, 0], equalize(darker))
    assert equalize(film).min() > 0.0 and equalize(film).max() < 1.0
