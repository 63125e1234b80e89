"""Class activation map overlays: size, range and placement."""

import io

import numpy as np
import pytest
from PIL import Image

from bot.ml.heatmap import COLORMAP, cam_to_map, heatmap_png, overlay
from bot.ml.preprocess import BORDER
from tests import synthetic


def test_cam_to_map_has_the_image_size_and_unit_range():
    cam = np.random.default_rng(0).normal(size=(14, 14)).astype(np.float32) * 5 - 3
    heat = cam_to_map(cam, (500, 380))
    assert heat.shape == (380, 500)
    assert heat.dtype == np.float32
    assert heat.min() >= 0.0 and heat.max() <= 1.0
    assert heat.max() > 0.9  # stretched to the full range


def test_the_hot_spot_lands_where_the_network_saw_it():
    cam = np.zeros((14, 14), np.float32)
    cam[0, 13] = 10.0  # top right of what the network saw
    heat = cam_to_map(cam, (400, 300))
    y, x = np.unravel_index(np.argmax(heat), heat.shape)
    assert y < 300 * 0.2 and x > 400 * 0.8
    assert heat[300 // 2, 400 // 2] == 0.0
    # The trimmed border continues the map's edge instead of cutting it off.
    top, right = round(300 * BORDER), 400 - round(400 * BORDER)
    assert heat[0, right - 1] == pytest.approx(heat[top, right - 1])


def test_flat_cam_gives_no_heat():
    assert cam_to_map(np.full((14, 14), 2.5), (100, 80)).max() == 0.0


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_heatmap_png_is_an_rgb_png_at_the_image_size(mode):
    image = synthetic.chest_xray(0, size=(384, 300)).convert(mode)
    cam = np.random.default_rng(1).normal(size=(14, 14))
    data = heatmap_png(image, cam)
    assert data.startswith(b"\x89PNG")
    decoded = Image.open(io.BytesIO(data))
    assert decoded.size == (384, 300) and decoded.mode == "RGB"


def test_overlay_keeps_the_xray_where_the_map_is_cold_and_colours_it_where_hot():
    image = synthetic.chest_xray(0, size=(200, 200))
    heat = np.zeros((200, 200), np.float32)
    heat[50:100, 50:100] = 1.0
    out = np.asarray(overlay(image, heat), dtype=np.int32)
    gray = np.asarray(image, dtype=np.int32)
    assert np.abs(out[150:, 150:] - gray[150:, 150:, None]).max() <= 1  # untouched
    hot = out[60:90, 60:90]
    assert (hot[..., 0] - hot[..., 2]).mean() > 40  # reddish
    assert COLORMAP.shape == (256, 3)
