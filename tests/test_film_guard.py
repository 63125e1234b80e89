"""The learned guard: refuses what is not an upright chest film, with a short specific reply.

Realistic inputs, none of them from the guard's own fitting generators: grayscale textures and
rendered text drawn here, and inverted, sideways and upside-down synthetic films. The decision
rule is also tested on its own with hand-made parameters.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from bot.core.errors import NotAChestXray
from bot.ml.film_guard import GUARD_FILE, KINDS, REPLIES, FilmGuard, FilmGuardModel
from bot.services import default_guard
from bot.settings import Settings
from tests import synthetic
from tests.harness import BotHarness, replies_in_thread


def wood_grain(seed: int, size: int = 400) -> Image.Image:
    """Rings and streaks, like a grayscale photo of wood or stone."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cx, cy = rng.uniform(-0.5, 1.5, 2)
    r = np.hypot(xx - cx, (yy - cy) * rng.uniform(2, 6))
    a = np.sin(r * rng.uniform(30, 90)) + 0.6 * rng.normal(size=(size, size))
    a = (a - a.min()) / (a.max() - a.min())
    image = Image.fromarray((a * 255).astype(np.uint8), mode="L")
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2)))


def cloudy(seed: int, size: int = 400) -> Image.Image:
    """Soft clouds from a few octaves of upsampled noise."""
    rng = np.random.default_rng(seed)
    a = np.zeros((size, size), np.float32)
    for octave, cells in enumerate((4, 9, 20, 50)):
        small = Image.fromarray(rng.random((cells, cells)).astype(np.float32), mode="F")
        a += np.asarray(small.resize((size, size), Image.Resampling.BICUBIC)) / (octave + 1)
    a = (a - a.min()) / (a.max() - a.min())
    return Image.fromarray((a * 255).astype(np.uint8), mode="L")


def letter(seed: int) -> Image.Image:
    """A gray, slightly blurred page of text, the kind a phone photo of a report gives."""
    rng = np.random.default_rng(seed)
    image = Image.new("L", (700, 900), int(rng.integers(150, 200)))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=int(rng.integers(16, 28)))
    words = [
        "Dear",
        "colleague",
        "the",
        "child",
        "was",
        "seen",
        "today",
        "with",
        "cough",
        "and",
        "fever",
        "please",
        "review",
    ]
    for y in range(30, 870, int(rng.integers(28, 44))):
        line = " ".join(words[int(i)] for i in rng.integers(0, len(words), 8))
        draw.text((30, y), line, fill=int(rng.integers(0, 60)), font=font)
    return image.filter(ImageFilter.GaussianBlur(0.8))


def film(seed: int) -> Image.Image:
    return synthetic.chest_xray(seed, size=(600, 640), pneumonia=seed % 2 == 1)


TRANSFORMS = {
    "inverted": ImageOps.invert,
    "rotated 90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "rotated 270": lambda im: im.transpose(Image.Transpose.ROTATE_270),
    "upside down": lambda im: im.transpose(Image.Transpose.ROTATE_180),
}


@pytest.fixture(scope="module")
def guard() -> FilmGuard:
    return FilmGuard()


def refusal(guard: FilmGuard, image: Image.Image) -> str | None:
    try:
        guard(image)
    except NotAChestXray as exc:
        return exc.reply
    return None


@pytest.mark.parametrize("make", [wood_grain, cloudy, letter], ids=["grain", "clouds", "letter"])
def test_grayscale_textures_and_text_are_refused(guard, make):
    replies = [refusal(guard, make(seed)) for seed in range(6)]
    assert all(reply is not None for reply in replies), replies
    assert all(len(reply) < 220 and "chest X-ray" in reply for reply in replies)


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_inverted_and_rotated_films_are_refused(guard, name):
    replies = [refusal(guard, TRANSFORMS[name](film(seed))) for seed in range(6)]
    assert sum(reply is not None for reply in replies) >= 5, replies


def test_the_classifier_reuses_the_guards_model_run(guard):
    image = film(0)
    refusal(guard, image)
    assert any(key.startswith("cxr-bot.outputs.") for key in image.info)


def test_the_setting_chooses_the_guard():
    assert isinstance(default_guard(Settings(_env_file=None, cxr_guard="learned")), FilmGuard)
    heuristic = default_guard(Settings(_env_file=None, cxr_guard="heuristic"))
    assert not isinstance(heuristic, FilmGuard)


async def test_a_texture_posted_in_slack_gets_the_guards_reply(slack, tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_GUARD", "learned")
    bot = await BotHarness(slack, tmp_path / "cxr.db", cxr_heatmaps=False).start()
    try:
        envelope = await bot.share("C0CLINIC1", [("wall.png", synthetic.png_bytes(cloudy(1)))])
        await bot.drain()
    finally:
        await bot.stop()
    [reply] = replies_in_thread(slack, "C0CLINIC1", envelope["event"]["ts"])
    assert "wall.png" in reply["text"]
    assert any(text.split(" Please")[0] in reply["text"] for text in REPLIES.values())
    assert "Pneumonia" not in reply["text"] and "Normal," not in reply["text"]


def _rule(tmp_path, coef: np.ndarray) -> FilmGuardModel:
    """A guard whose classifier is `coef` on a 2-d embedding and whose films sit at 0."""
    path = tmp_path / GUARD_FILE
    np.savez(
        path,
        mean=np.zeros(2),
        scale=np.ones(2),
        coef=coef,
        intercept=np.zeros(len(KINDS)),
        pca_mean=np.zeros(2),
        components=np.array([[1.0, 0.0]]),
        variances=np.array([1.0]),
        residual_scale=np.array(1.0),
        model_sha256=np.array("x"),
        min_p_film=np.array(0.3),
        max_distance=np.array(9.0),
    )
    return FilmGuardModel(path)


def test_the_rule_refuses_by_kind_then_by_distance(tmp_path):
    coef = np.zeros((len(KINDS), 2))
    coef[0] = [0.0, -5.0]  # film: low second value
    coef[KINDS.index("sideways")] = [0.0, 5.0]
    rule = _rule(tmp_path, coef)
    near, sideways, far = rule.judge(np.array([[0.5, -1.0], [0.5, 1.0], [5.0, -1.0]]))
    assert near.refusal is None and near.kind == "film"
    assert sideways.refusal == "sideways" and sideways.p_film < 0.3
    [unsure] = rule.judge(np.array([[0.5, 0.15]]))  # leaning sideways, not sure of it
    assert unsure.kind == "sideways" and unsure.refusal == "other"
    assert far.kind == "film" and far.refusal == "far" and far.distance > 9.0


def test_replies_are_short_kind_and_specific():
    assert set(REPLIES) == {"other", "far", "inverted", "sideways", "upside_down"}
    for text in REPLIES.values():
        assert len(text) < 200 and "won't label it" in text
    assert "inverted" in REPLIES["inverted"] and "side" in REPLIES["sideways"]
    assert "upside down" in REPLIES["upside_down"]
