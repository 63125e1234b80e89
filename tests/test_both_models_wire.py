"""CXR_BOTH_MODELS at the wire: Rekognition and the bundled local model both classify; when
their top labels differ the verdict reads "Uncertain: the two models disagree" with both
answers, and a review of it counts toward each model's agreement."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.adapters.onnx_classifier import OnnxClassifier
from bot.core.labels import Label
from bot.ml.model_card import load_model_card
from tests.harness import BotHarness, replies_in_thread
from tests.test_core_loop import expect_detect, xray_jpeg
from tests.test_review_wire import CHANNEL, REVIEWER, press


@pytest.fixture(scope="module")
def local_model() -> OnnxClassifier:
    return OnnxClassifier.bundled()


async def local_answer(local: OnnxClassifier, data: bytes) -> Label:
    image = Image.open(io.BytesIO(data))
    image.load()
    prediction = await local.classify(image.convert("L"))
    return max(prediction.scores, key=lambda label: prediction.scores[label])


async def test_two_models_disagree_and_the_review_counts_for_both(
    slack, rekognition, tmp_path, local_model
):
    data = xray_jpeg(seed=3)
    local_says = await local_answer(local_model, data)
    opposite = 0.05 if local_says is Label.PNEUMONIA else 0.95  # Rekognition says the other
    agreeing = 0.95 if local_says is Label.PNEUMONIA else 0.05
    bot = await BotHarness(
        slack,
        tmp_path / "cxr.db",
        rekognition=rekognition,
        local=local_model,
        cxr_both_models=True,
        cxr_heatmaps=False,
        cxr_reviewers=[REVIEWER],
    ).start()
    try:
        expect_detect(rekognition, opposite)  # one image at a time: the stub answers in order
        first = await bot.share(CHANNEL, [("first.jpeg", data)])
        await bot.drain()
        expect_detect(rekognition, agreeing)
        second = await bot.share(CHANNEL, [("second.jpeg", data)])
        await bot.drain()
        [disagreed] = replies_in_thread(slack, CHANNEL, first["event"]["ts"])
        [agreed] = replies_in_thread(slack, CHANNEL, second["event"]["ts"])

        assert "first.jpeg: Uncertain: the two models disagree (" in disagreed["text"]
        assert "Rekognition cxr cxr.2026-01-01: " in disagreed["text"]
        card = load_model_card()
        assert f"local {card.name} {card.version}: {local_says.value}" in disagreed["text"]
        assert "*Uncertain: the two models disagree*" in str(disagreed["blocks"])
        assert "disagree" not in agreed["text"]
        assert f"second.jpeg: {local_says.value}, 95.0%" in agreed["text"]

        truth = "Pneumonia" if opposite > 0.5 else "Normal"  # the reviewer sides with Rekognition
        await press(bot, disagreed, truth, REVIEWER)
        report = await bot.services.reviewing.report()
        by_kind = {f.model.kind: f for f in report.figures}
        assert (by_kind["rekognition"].agreement.k, by_kind["rekognition"].agreement.n) == (1, 1)
        assert (by_kind["local"].agreement.k, by_kind["local"].agreement.n) == (0, 1)
        assert by_kind["local"].uncertain == by_kind["rekognition"].uncertain == 1
        rekognition.stubber.assert_no_pending_responses()
    finally:
        await bot.stop()
