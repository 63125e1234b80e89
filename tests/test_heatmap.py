"""Class activation map overlays: size, range and placement."""

import io

import numpy as np
import pytest
from PIL import Image

from bot.ml.heatmap import COLORMAP, MAX_SIDE, cam_to_map, evidence_strength, heatmap_png, overlay
from bot.ml.preprocess import BORDER
from tests import synthetic


def test_cam_to_map_has_the_image_size_and_unit_range():
    cam = np.random.default_rng(0).normal(size=(14, 14)).astype(np.float32) * 5 - 3
    heat = cam_to_map(cam, (500, 380))
    assert heat.shape == (380, 500)
    assert heat.dtype == np.float32
    assert heat.min() >= 0.0 and heat.max() <= 1.0
    assert heat.max() > 0.9  # a certain verdict may reach the top of the scale


@pytest.mark.parametrize("p", [0.52, 0.6, 0.75, 0.9, 0.99])
def test_the_heat_follows_the_score_not_the_maps_own_range(p):
    cam = np.random.default_rng(0).normal(size=(14, 14)).astype(np.float32) * 5
    heat = cam_to_map(cam, (300, 300), strength=evidence_strength(p))
    assert heat.max() == pytest.approx(2 * p - 1, abs=0.02)


def test_an_uncertain_verdict_shows_no_vivid_spot():
    image = synthetic.chest_xray(0, size=(300, 300))
    cam = np.full((14, 14), -2.0, np.float32)
    cam[6:8, 6:8] = 12.0  # one strong cell
    faint = np.asarray(
        overlay(image, cam_to_map(cam, image.size, strength=evidence_strength(0.52)))
    )
    vivid = np.asarray(
        overlay(image, cam_to_map(cam, image.size, strength=evidence_strength(0.99)))
    )
    gray = np.asarray(image, dtype=np.int32)[..., None]
    assert np.abs(faint.astype(np.int32) - gray).max() <= 1  # the film, untouched
    assert np.abs(vivid.astype(np.int32) - gray).max() > 60


def test_only_evidence_above_the_decision_point_is_drawn():
    cam = np.linspace(-3, 1, 196, dtype=np.float32).reshape(14, 14)
    heat = cam_to_map(cam, (140, 140), offset=0.5, border=0.0)
    assert heat[:70].max() == 0.0 and heat.max() > 0.9


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


def test_a_map_below_the_decision_point_gives_no_heat_and_a_flat_one_no_spot():
    assert cam_to_map(np.full((14, 14), -2.5), (100, 80)).max() == 0.0
    flat = cam_to_map(np.full((14, 14), 2.5), (100, 80), strength=0.6)
    assert flat.min() == pytest.approx(flat.max()) == pytest.approx(0.6)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_heatmap_png_is_an_rgb_png_at_the_image_size_with_a_legend_beneath(mode):
    image = synthetic.chest_xray(0, size=(900, 700)).convert(mode)
    cam = np.random.default_rng(1).normal(size=(14, 14))
    data = heatmap_png(image, cam, label="Pneumonia", p_class=0.9)
    assert data.startswith(b"\x89PNG")
    decoded = Image.open(io.BytesIO(data))
    assert decoded.mode == "RGB" and decoded.width == 900 and 700 < decoded.height < 800
    strip = np.asarray(decoded)[705:]
    assert strip.std() > 10  # text and a colour bar, not an empty band


def test_a_large_film_is_drawn_at_the_cap():
    image = synthetic.chest_xray(0, size=(2000, 1600))
    decoded = Image.open(io.BytesIO(heatmap_png(image, np.zeros((14, 14)), p_class=0.8)))
    assert decoded.width == MAX_SIDE


def test_overlay_keeps_the_xray_where_the_map_is_cold_and_colours_it_where_hot():
    image = synthetic.chest_xray(0, size=(200, 200))
    heat = np.zeros((200, 200), np.float32)
    heat[50:100, 50:100] = 1.0
    out = np.asarray(overlay(image, heat), dtype=np.int32)
    gray = np.asarray(image, dtype=np.int32)
    assert np.abs(out[150:, 150:] - gray[150:, 150:, None]).max() <= 1  # untouched
    hot = out[60:90, 60:90]
    assert (hot[..., 0] - hot[..., 2]).mean() > 40  # red
    assert COLORMAP.shape == (256, 3)
