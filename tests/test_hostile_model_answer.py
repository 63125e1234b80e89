"""Garbage from a classifier never becomes a verdict: the answer contract at the wire.

Rekognition answers through botocore at the HTTP layer (a before-send hook hands back raw
bodies, NaN and out-of-range values included, which Stubber's validation would refuse to
produce); the local model is a stand-in returning what a broken export could. Each bad answer
must read "no verdict" in the thread, with an error log line, and never a percentage.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError

from bot.core.intake import REACTION_FAILED
from bot.core.labels import Label, ModelInfo, Prediction
from bot.core.model_answer import UNREADABLE_REPLY
from tests.harness import BotHarness, rekognition_client, replies_in_thread
from tests.test_core_loop import CHANNEL, xray_jpeg

JSON = "application/x-amz-json-1.1"
NO_VERDICT = "The model answered something I can't read, so there's no verdict"


def labels(*pairs: tuple[str, float]) -> dict[str, Any]:
    return {"CustomLabels": [{"Name": name, "Confidence": value} for name, value in pairs]}


class RawRekognition:
    """A real boto3 client whose DetectCustomLabels calls get queued raw HTTP answers."""

    def __init__(self) -> None:
        self.client = rekognition_client()
        self.answers: list[tuple[int, bytes, str]] = []
        self.calls = 0
        self.client.meta.events.register("before-send.rekognition.DetectCustomLabels", self._send)

    def answer(self, body: Any, status: int = 200, content_type: str = JSON) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()  # NaN as NaN
        self.answers.append((status, raw, content_type))

    def timeout(self) -> None:
        self.answers.append((0, b"", ""))

    def _send(self, request: Any, **_: Any) -> AWSResponse:
        self.calls += 1
        status, raw, content_type = self.answers.pop(0)
        if status == 0:
            raise ReadTimeoutError(endpoint_url=request.url)
        return AWSResponse(request.url, status, {"Content-Type": content_type}, _Raw(raw))


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any):
        yield self.body


@pytest.fixture
def rekognition():
    return RawRekognition()


@pytest.fixture
async def bot(slack, rekognition, tmp_path):
    harness = BotHarness(slack, tmp_path / "cxr.db", rekognition=rekognition.client)
    await harness.start()
    yield harness
    await harness.stop()


async def screen(bot: BotHarness) -> dict[str, Any]:
    envelope = await bot.share(CHANNEL, [("chest.jpeg", xray_jpeg())])
    await bot.drain()
    [reply] = replies_in_thread(bot.slack, CHANNEL, envelope["event"]["ts"])
    reply["reactions"] = bot.slack.reactions[(CHANNEL, envelope["event"]["ts"])]
    return reply


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (labels(("PNEUMONIA", math.nan), ("NORMAL", 50.0)), "a score that isn't finite"),
        (labels(("PNEUMONIA", -20.0), ("NORMAL", 120.0)), "a score out of range"),
        (labels(("PNEUMONIA", 150.0), ("NORMAL", -50.0)), "a score out of range"),
        (labels(("PNEUMONIA", math.inf), ("NORMAL", 0.0)), "a score that isn't finite"),
        (labels(("Cat", 96.0), ("Pneumonia", 4.0)), "an unknown label"),
        (labels(("PNEUMONIA", 97.0)), "1 labels, expected 2"),
        (labels(("NORMAL", 50.0), ("normal", 50.0)), "a label given twice"),
        (labels(("NORMAL", 40.0), ("PNEUMONIA", 40.0)), "scores summing to 80.0%"),
        (labels(("NORMAL", 60.0), ("PNEUMONIA", 40.0), ("COVID", 0.0)), "3 labels, expected 2"),
        ({"CustomLabels": []}, "0 labels, expected 2"),
    ],
)
async def test_rekognition_garbage_gets_no_verdict(bot, rekognition, caplog, answer, problem):
    rekognition.answer(answer)
    with caplog.at_level(logging.ERROR, logger="bot.core.model_answer"):
        reply = await screen(bot)
    assert NO_VERDICT in reply["text"] and "%" not in reply["text"].split("chest.jpeg")[1]
    assert "Normal" not in reply["text"] and "Pneumonia" not in reply["text"]
    assert "Screening aid" not in reply["text"]  # no verdict, so no verdict disclaimer either
    assert reply["reactions"] == [REACTION_FAILED]
    [record] = [r for r in caplog.records if r.getMessage() == "classifier.unreadable_answer"]
    assert record.levelno == logging.ERROR and record.problem == problem
    assert record.model == "Rekognition cxr cxr.2026-01-01"


@pytest.mark.parametrize(
    ("pneumonia", "normal", "expected"),
    [
        (60.5, 40.0, "Uncertain"),  # sums to 100.5%: within the 2-point tolerance
        (97.1, 2.9, "Pneumonia, 97.1%"),
        (0.0, 100.0, "Normal, 100.0%"),
    ],
)
async def test_good_answers_still_get_their_verdict(bot, rekognition, pneumonia, normal, expected):
    answer = labels(("normal", normal), ("PNEUMONIA", pneumonia))  # any order, any case
    rekognition.answer(answer)
    reply = await screen(bot)
    assert f"chest.jpeg: {expected}" in reply["text"]


async def test_the_tolerance_is_a_setting(slack, rekognition, tmp_path):
    harness = BotHarness(
        slack, tmp_path / "cxr.db", rekognition=rekognition.client, cxr_score_sum_tolerance=0.001
    )
    await harness.start()
    try:
        rekognition.answer(labels(("NORMAL", 60.5), ("PNEUMONIA", 40.0)))
        reply = await screen(harness)
    finally:
        await harness.stop()
    assert NO_VERDICT in reply["text"]


class BrokenLocalModel:
    """A local model whose export went wrong: it answers whatever it is given."""

    max_side = 512
    model = ModelInfo(kind="local", name="cxr-cnn", version="v1")

    def __init__(self, scores: dict[Any, float]) -> None:
        self.scores = scores

    async def classify(self, image: Any) -> Prediction:
        return Prediction(scores=self.scores, model=self.model)


@pytest.mark.parametrize(
    "scores",
    [
        {Label.NORMAL: math.nan, Label.PNEUMONIA: 0.5},
        {Label.NORMAL: 0.7, Label.PNEUMONIA: 0.7},
        {Label.PNEUMONIA: 0.97},
        {Label.NORMAL: 1.5, Label.PNEUMONIA: -0.5},
        {Label.NORMAL: 50.0, Label.PNEUMONIA: 50.0},  # percent where 0..1 was meant
    ],
)
async def test_local_model_garbage_gets_no_verdict(slack, tmp_path, scores):
    harness = BotHarness(slack, tmp_path / "cxr.db", local=BrokenLocalModel(scores))
    await harness.start()
    try:
        reply = await screen(harness)
    finally:
        await harness.stop()
    assert NO_VERDICT in reply["text"] and "%" not in reply["text"].split("chest.jpeg")[1]


def test_the_reply_says_there_is_no_verdict():
    assert UNREADABLE_REPLY.startswith(NO_VERDICT)


# --- AWS failures whatever their body ----------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (503, b"<html><body>Service Unavailable</body></html>", "text/html"),
        (502, b"Bad Gateway", "text/plain"),
        (500, b"", JSON),
        (500, b'{"__type": "InternalServerError"', JSON),  # cut short
        (200, b"definitely not json", JSON),
    ],
)
async def test_aws_errors_with_any_body_get_a_clear_reply(
    bot, rekognition, status, body, content_type
):
    for _ in range(8):  # botocore's standard mode: 5 attempts in the harness
        rekognition.answer(body, status=status, content_type=content_type)
    reply = await screen(bot)
    text = reply["text"].split("chest.jpeg: ")[1]
    if status == 200:  # botocore reads an unparseable 200 as an empty answer
        assert text.startswith(NO_VERDICT)
    else:
        assert "Rekognition" in text and "try again" in text
    assert "Something went wrong on my side" not in text
    assert "%" not in text
    if status >= 500:
        assert rekognition.calls >= 3  # retried first


async def test_one_aws_503_with_an_html_body_is_retried(bot, rekognition):
    rekognition.answer(b"<html>Service Unavailable</html>", status=503, content_type="text/html")
    rekognition.answer(labels(("NORMAL", 10.0), ("PNEUMONIA", 90.0)))
    reply = await screen(bot)
    assert "chest.jpeg: Pneumonia, 90.0%" in reply["text"] and rekognition.calls == 2


async def test_aws_timeouts_are_retried_then_explained(bot, rekognition):
    for _ in range(8):
        rekognition.timeout()
    reply = await screen(bot)
    assert "couldn't reach Amazon Rekognition" in reply["text"] and rekognition.calls >= 3


async def test_one_aws_timeout_is_retried(bot, rekognition):
    rekognition.timeout()
    rekognition.answer(labels(("NORMAL", 95.0), ("PNEUMONIA", 5.0)))
    reply = await screen(bot)
    assert "chest.jpeg: Normal, 95.0%" in reply["text"] and rekognition.calls == 2
