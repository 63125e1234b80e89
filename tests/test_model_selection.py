"""Which model answers: the local model by default, Rekognition when configured, and the local
model while the Rekognition model is not running (when the fallback setting allows it)."""

from __future__ import annotations

import pytest
from botocore.stub import ANY

from bot.adapters.onnx_classifier import OnnxClassifier
from bot.core.clock import FakeClock
from bot.ml.model_card import load_model_card
from tests.harness import VERSION_ARN, BotHarness, labels_response, replies_in_thread
from tests.synthetic import chest_xray, jpeg_bytes

BUNDLED = load_model_card()

CHANNEL = "C0CLINIC1"
DETECT = {"ProjectVersionArn": VERSION_ARN, "Image": {"Bytes": ANY}, "MinConfidence": 0}


@pytest.fixture(scope="module")
def local_model() -> OnnxClassifier:
    return OnnxClassifier.bundled()


def not_ready(rekognition) -> None:
    rekognition.stubber.add_client_error(
        "detect_custom_labels",
        service_error_code="ResourceNotReadyException",
        service_message="not ready",
        http_status_code=400,
        expected_params=DETECT,
    )


async def test_local_model_answers_without_aws(slack, tmp_path):
    harness = await BotHarness(slack, tmp_path / "cxr.db").start()
    try:
        envelope = await harness.share(CHANNEL, [("a.jpeg", jpeg_bytes(chest_xray()))])
        await harness.drain()
    finally:
        await harness.stop()
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert f"(local {BUNDLED.name} {BUNDLED.version})" in reply["text"]
    [heatmap] = slack.calls_to("files.completeUploadExternal")
    assert heatmap.params["thread_ts"] == envelope["event"]["ts"]
    uploaded = [f for f in slack.files.values() if f.name == "a-heatmap.png"]
    assert uploaded and uploaded[0].data.startswith(b"\x89PNG")


async def test_heatmaps_can_be_switched_off(slack, tmp_path):
    harness = await BotHarness(slack, tmp_path / "cxr.db", cxr_heatmaps=False).start()
    try:
        envelope = await harness.share(CHANNEL, [("a.jpeg", jpeg_bytes(chest_xray()))])
        await harness.drain()
    finally:
        await harness.stop()
    assert len(replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])) == 1
    assert not slack.calls_to("files.getUploadURLExternal")


async def test_stopped_rekognition_model_falls_back_to_the_local_model(
    slack, rekognition, tmp_path, local_model
):
    clock = FakeClock()
    harness = await BotHarness(
        slack, tmp_path / "cxr.db", rekognition=rekognition, local=local_model, clock=clock
    ).start()
    try:
        not_ready(rekognition)
        first = await harness.share(CHANNEL, [("a.jpeg", jpeg_bytes(chest_xray(seed=1)))])
        await harness.drain()
        # within the minute the stopped model is not asked again
        second = await harness.share(CHANNEL, [("b.jpeg", jpeg_bytes(chest_xray(seed=2)))])
        await harness.drain()
        rekognition.stubber.assert_no_pending_responses()
        # a minute later it is asked again, and answers
        await clock.advance(61)
        rekognition.stubber.add_response("detect_custom_labels", labels_response(0.9), DETECT)
        third = await harness.share(CHANNEL, [("c.jpeg", jpeg_bytes(chest_xray(seed=3)))])
        await harness.drain()
    finally:
        await harness.stop()
    for envelope in (first, second):
        [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
        assert f"(local {BUNDLED.name} {BUNDLED.version})" in reply["text"]
        assert "isn't running, so the local model answered" in reply["text"]
    [reply] = replies_in_thread(slack, CHANNEL, third["event"]["ts"])
    assert "c.jpeg: Pneumonia, 90.0% (Rekognition cxr cxr.2026-01-01)." in reply["text"]
    rekognition.stubber.assert_no_pending_responses()


async def test_without_fallback_a_stopped_model_is_reported(slack, rekognition, tmp_path):
    harness = await BotHarness(slack, tmp_path / "cxr.db", rekognition=rekognition).start()
    try:
        not_ready(rekognition)
        envelope = await harness.share(CHANNEL, [("a.jpeg", jpeg_bytes(chest_xray()))])
        await harness.drain()
    finally:
        await harness.stop()
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert "isn't running right now" in reply["text"] and "/cxr start" in reply["text"]
    assert f"local {BUNDLED.name}" not in reply["text"]
