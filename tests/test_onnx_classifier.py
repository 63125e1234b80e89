"""The local model behind the Classifier port: the bundled ONNX file and its model card."""

import asyncio
import io
import json
import shutil
import threading

import numpy as np
import pytest
from PIL import Image

from bot.adapters.onnx_classifier import DEFAULT_MODEL, OnnxClassifier
from bot.core.errors import ClassifierUnavailable
from bot.core.labels import Label, ModelInfo, decide
from bot.core.ports import Classifier
from bot.ml.calibration import sigmoid
from bot.ml.heatmap import MAX_SIDE as HEATMAP_MAX_SIDE
from bot.ml.model_card import load_model_card
from bot.ml.preprocess import MAX_SIDE, preprocess
from tests import synthetic


@pytest.fixture(scope="module")
def classifier() -> OnnxClassifier:
    return OnnxClassifier.bundled()


def test_bundled_model_is_small_and_matches_its_card():
    assert DEFAULT_MODEL.is_file()
    assert DEFAULT_MODEL.stat().st_size <= 10 * 1024 * 1024
    card = load_model_card()
    assert card.file == DEFAULT_MODEL.name
    assert card.temperature > 0
    assert "doi:10.17632/rscbjbr9sj.2" in card.raw["data"]["attribution"]
    assert "CC BY 4.0" in card.raw["data"]["attribution"]
    markdown = (DEFAULT_MODEL.parent / "MODEL_CARD.md").read_text()
    assert card.sha256 in markdown and "Kermany" in markdown


def test_implements_the_classifier_port(classifier):
    port: Classifier = classifier
    card = classifier.card
    assert port.model == ModelInfo(kind="local", name=card.name, version=card.version)
    assert port.max_side == HEATMAP_MAX_SIDE  # decoded large enough for a readable heatmap
    assert OnnxClassifier.bundled(heatmaps=False).max_side == MAX_SIDE


async def test_classify_returns_calibrated_scores_and_a_heatmap(classifier):
    image = synthetic.chest_xray(3, size=(384, 300), pneumonia=True)
    prediction = await classifier.classify(image)
    assert set(prediction.scores) == {Label.NORMAL, Label.PNEUMONIA}
    assert all(0.0 <= p <= 1.0 for p in prediction.scores.values())
    assert sum(prediction.scores.values()) == pytest.approx(1.0)
    assert prediction.model == classifier.model
    if prediction.scores[Label.PNEUMONIA] < 0.5:  # no heatmap for Normal unless asked
        assert prediction.heatmap_png is None
        prediction = await OnnxClassifier.bundled(heatmap_normal=True).classify(image)
    heatmap = Image.open(io.BytesIO(prediction.heatmap_png))
    assert heatmap.width == image.width and heatmap.height > image.height  # legend beneath
    assert heatmap.mode == "RGB"


async def test_normal_verdicts_get_a_heatmap_only_when_asked(classifier, monkeypatch):
    def normal(batch):
        cam = np.full((1, 14, 14), classifier.card.threshold_logit - 3.0, np.float32)
        return cam.mean(axis=(1, 2)), cam

    image = synthetic.chest_xray(0, size=(256, 256))
    monkeypatch.setattr(classifier, "infer", normal)
    assert (await classifier.classify(image)).heatmap_png is None
    asked = OnnxClassifier.bundled(heatmap_normal=True)
    monkeypatch.setattr(asked, "infer", normal)
    assert (await asked.classify(image)).heatmap_png.startswith(b"\x89PNG")


async def test_the_guard_and_the_classifier_share_one_model_run(classifier, monkeypatch):
    image = synthetic.chest_xray(4, size=(256, 256))
    outputs = classifier.outputs(image)
    assert set(outputs) >= {"logit", "cam"}

    def no_second_run(batch):
        raise AssertionError("ran the model twice")

    monkeypatch.setattr(classifier, "infer", no_second_run)
    prediction = await classifier.classify(image)
    p = prediction.scores[Label.PNEUMONIA]
    assert p == pytest.approx(float(classifier.probability(outputs["logit"])[0]))
    derived = image.transpose(Image.Transpose.ROTATE_180)  # PIL copies `info`: not reused
    with pytest.raises(ClassifierUnavailable):
        await classifier.classify(derived)


async def test_scores_are_the_card_s_threshold_and_temperature_applied(classifier):
    card = classifier.card
    image = synthetic.chest_xray(5, size=(320, 320))
    logit, cam = classifier.infer(preprocess(image))
    expected = float(sigmoid((logit[0] - card.threshold_logit) / card.temperature))
    prediction = await classifier.classify(image)
    assert prediction.scores[Label.PNEUMONIA] == pytest.approx(expected, abs=1e-6)
    # The top label is the model's decision: pneumonia exactly when logit >= threshold.
    top = max(prediction.scores, key=prediction.scores.get)
    assert (top is Label.PNEUMONIA) == (logit[0] >= card.threshold_logit)
    assert cam.shape == (1, 14, 14)


async def test_uncertain_verdict_near_the_decision_boundary(classifier, monkeypatch):
    monkeypatch.setattr(
        classifier,
        "infer",
        lambda batch: (
            np.array([classifier.card.threshold_logit + 0.01], np.float32),
            np.zeros((1, 14, 14)),
        ),
    )
    prediction = await classifier.classify(synthetic.chest_xray(0, size=(256, 256)))
    verdict = decide(prediction, 0.7)
    assert verdict.uncertain and verdict.confidence < 0.7


async def test_heatmaps_can_be_switched_off():
    quiet = OnnxClassifier.bundled(heatmaps=False)
    prediction = await quiet.classify(synthetic.chest_xray(1, size=(256, 256)))
    assert prediction.heatmap_png is None


async def test_rgb_input_gives_the_same_scores(classifier):
    image = synthetic.chest_xray(2, size=(300, 300))
    gray = await classifier.classify(image)
    rgb = await classifier.classify(image.convert("RGB"))
    assert gray.scores[Label.PNEUMONIA] == pytest.approx(rgb.scores[Label.PNEUMONIA], abs=1e-5)


async def test_inference_runs_off_the_event_loop(classifier, monkeypatch):
    threads = []
    original = classifier.predict

    def spy(image, **kwargs):
        threads.append(threading.get_ident())
        return original(image, **kwargs)

    monkeypatch.setattr(classifier, "predict", spy)
    images = [synthetic.chest_xray(s, size=(256, 256)) for s in range(3)]
    results = await asyncio.gather(*(classifier.classify(im) for im in images))
    assert len(results) == 3
    assert threading.get_ident() not in threads


async def test_runtime_failure_is_a_user_facing_error(classifier, monkeypatch):
    def broken(batch):
        raise RuntimeError("onnxruntime exploded")

    monkeypatch.setattr(classifier, "infer", broken)
    with pytest.raises(ClassifierUnavailable):
        await classifier.classify(synthetic.chest_xray(0, size=(256, 256)))


def test_model_and_card_must_match(tmp_path):
    shutil.copy(DEFAULT_MODEL, tmp_path / DEFAULT_MODEL.name)
    card = json.loads((DEFAULT_MODEL.parent / "model_card.json").read_text())
    card["sha256"] = "0" * 64
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="does not match its model card"):
        OnnxClassifier(tmp_path / DEFAULT_MODEL.name)


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="local model not found"):
        OnnxClassifier(tmp_path / "nope.onnx")


def test_the_status_card_shows_both_validation_splits_and_the_caveats():
    from bot.slack.fleet import card_lines

    text = "\n".join(card_lines(load_model_card().raw))
    assert "Validation: accuracy" in text
    assert "Harder validation (films atypical for their class): accuracy" in text
    assert "hospital" in text and "Uncertain" in text
