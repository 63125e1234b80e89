"""The not-an-X-ray guard: X-rays pass, photos, documents, screenshots and odd shapes don't."""

import pytest
from PIL import Image

from bot.core.errors import NotAChestXray, UserFacingError
from bot.core.xray_guard import check_chest_xray, measure
from tests import synthetic


def rejection(image: Image.Image) -> NotAChestXray:
    with pytest.raises(NotAChestXray) as info:
        check_chest_xray(image)
    assert info.value.reply.startswith("This doesn't look like a chest X-ray")
    return info.value


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("pneumonia", [False, True])
def test_synthetic_xrays_pass(seed, pneumonia):
    check_chest_xray(synthetic.chest_xray(seed, pneumonia=pneumonia))


@pytest.mark.parametrize("size", [(224, 224), (1400, 1000), (700, 1000), (900, 420)])
def test_xray_sizes_and_shapes_that_real_films_have_pass(size):
    check_chest_xray(synthetic.chest_xray(1, size=size))


def test_gray_xray_stored_as_rgb_passes():
    check_chest_xray(synthetic.chest_xray(2).convert("RGB"))


def test_faint_tint_passes():
    """A film photographed under warm light: gray with a slight colour cast."""
    bands = synthetic.chest_xray(3).convert("RGB").split()
    scales = (1.0, 0.95, 0.85)
    tinted = Image.merge(
        "RGB", [b.point(lambda v, k=k: int(v * k)) for b, k in zip(bands, scales, strict=True)]
    )
    check_chest_xray(tinted)


def test_large_images_pass_and_are_left_untouched():
    big = synthetic.chest_xray(0, size=(2000, 1600))
    check_chest_xray(big)
    assert big.size == (2000, 1600)


@pytest.mark.parametrize("seed", range(4))
def test_colour_photo_is_rejected(seed):
    error = rejection(synthetic.color_photo(seed))
    assert "in colour" in error.reply
    assert isinstance(error, UserFacingError)
    assert error.code == "not_a_chest_xray"
    assert "colour=" in error.detail  # the measurements go to the logs


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_document_is_rejected(mode):
    assert "document" in rejection(synthetic.document().convert(mode)).reply


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_screenshot_is_rejected(mode):
    rejection(synthetic.screenshot().convert(mode))


def test_flat_gray_graphic_is_rejected():
    drawing = Image.new("L", (600, 500), 90)
    drawing.paste(150, (100, 100, 300, 400))
    drawing.paste(60, (350, 50, 550, 450))
    assert "flat areas" in rejection(drawing).reply


def test_blank_image_is_rejected():
    assert "blank" in rejection(Image.new("L", (400, 400), 128)).reply


@pytest.mark.parametrize("size", [(1500, 400), (300, 1000)])
def test_extreme_aspect_ratio_is_rejected(size):
    assert "elongated" in rejection(synthetic.chest_xray(0, size=size)).reply


def test_measure_reports_every_figure():
    found = measure(synthetic.chest_xray(0))
    assert set(found) == {"aspect", "colour", "white", "flat", "std"}
    assert found["colour"] == 0.0
