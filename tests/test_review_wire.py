"""Reviews at the wire: buttons under verdicts pressed by reviewers and others, corrections,
the message updated in place with its metadata, `/cxr review` against a hand-computed table,
the same figures in `/cxr status`, and the chart posted as a PNG."""

from __future__ import annotations

import copy
import io
from typing import Any

import pytest
from PIL import Image

from bot.core.review.records import CaseKey
from tests.harness import BotHarness, replies_in_thread
from tests.test_core_loop import expect_detect, xray_jpeg

CHANNEL = "C0CLINIC1"
REVIEWER = "U0REVIEW1"
GROUP_MEMBER = "U0REVIEW2"
GROUP = "S0REVIEWRS"
OUTSIDER = "U0VISITOR"
OPS = "C0OPS0001"


@pytest.fixture
async def bot(slack, rekognition, tmp_path):
    slack.usergroups[GROUP] = [GROUP_MEMBER]
    harness = BotHarness(
        slack,
        tmp_path / "cxr.db",
        rekognition=rekognition,
        cxr_reviewers=[REVIEWER, GROUP],
        cxr_ops_channel=OPS,
    )
    await harness.start()
    yield harness
    await harness.stop()


async def verdict(bot: BotHarness, rekognition, pneumonia: float, name: str = "a.jpeg"):
    """Post one image; return (the posted message's ts, the bot's reply as Slack holds it)."""
    expect_detect(rekognition, pneumonia)
    envelope = await bot.share(CHANNEL, [(name, xray_jpeg(seed=len(name)))])
    await bot.drain()
    ts = envelope["event"]["ts"]
    [reply] = replies_in_thread(bot.slack, CHANNEL, ts)
    return ts, reply


async def press(bot: BotHarness, reply: dict[str, Any], label: str, user: str) -> None:
    message = copy.deepcopy(bot.slack.find_message(CHANNEL, reply["ts"]))
    message.pop("metadata", None)  # interaction payloads need not carry it
    for block in message["blocks"]:
        for element in block.get("elements", []):
            if element.get("type") == "button" and element["text"]["text"] == label:
                action = {**element, "block_id": block["block_id"]}
                payload = bot.slack.block_action(
                    action, message=message, channel=CHANNEL, user=user
                )
                status, _ = await bot.post_action(payload)
                assert status == 200
                await bot.drain()
                return
    raise AssertionError(f"no {label!r} button")


def review_line(bot: BotHarness, reply: dict[str, Any]) -> str:
    message = bot.slack.find_message(CHANNEL, reply["ts"])
    lines = [
        e["text"]
        for b in message["blocks"]
        if b.get("block_id", "").startswith("reviewed:")
        for e in b["elements"]
    ]
    assert len(lines) <= 1
    return lines[0] if lines else ""


async def test_each_verdict_gets_three_review_buttons(bot, rekognition):
    _, reply = await verdict(bot, rekognition, 0.93)
    [buttons] = [b for b in reply["blocks"] if b["type"] == "actions"]
    assert [e["text"]["text"] for e in buttons["elements"]] == [
        "Normal",
        "Pneumonia",
        "Not assessable",
    ]


async def test_a_reviewer_confirms_and_a_group_member_corrects(bot, slack, rekognition):
    ts, reply = await verdict(bot, rekognition, 0.93)
    posted = {"event_type": "cxr_reply", "event_payload": {"upload": f"{CHANNEL}:{ts}", "part": 1}}
    assert slack.find_message(CHANNEL, reply["ts"])["metadata"] == posted
    await press(bot, reply, "Pneumonia", REVIEWER)
    assert review_line(bot, reply) == f":memo: Reviewed by <@{REVIEWER}>: *Pneumonia*"

    await press(bot, reply, "Normal", GROUP_MEMBER)
    assert review_line(bot, reply) == (
        f":memo: Reviewed by <@{GROUP_MEMBER}>: *Normal* (corrects Pneumonia by <@{REVIEWER}>)"
    )
    # the verdict itself and its buttons stay; the metadata was passed back explicitly
    message = slack.find_message(CHANNEL, reply["ts"])
    assert "*Pneumonia*, 93.0%" in str(message["blocks"])
    assert any(b["type"] == "actions" for b in message["blocks"])
    for call in slack.calls_to("chat.update"):
        assert call.params["metadata"] == posted
    assert message["metadata"] == posted

    case = CaseKey(CHANNEL, ts, reply_file_id(reply))
    reviews = bot.services.reviews
    history = await reviews.off_loop(reviews.history, case)
    assert [(r.reviewer, r.label.value) for r in history] == [
        (REVIEWER, "Pneumonia"),
        (GROUP_MEMBER, "Normal"),
    ]
    assert (await reviews.off_loop(reviews.current, case)).label.value == "Normal"
    audit = await bot.services.audit.recent(5)
    assert [(a.actor, a.action) for a in audit[:2]] == [
        (GROUP_MEMBER, "review"),
        (REVIEWER, "review"),
    ]
    assert "was Pneumonia" in audit[0].result


def reply_file_id(reply: dict[str, Any]) -> str:
    block = next(b for b in reply["blocks"] if b["type"] == "actions")
    return block["block_id"].removeprefix("review:")


async def test_a_non_reviewer_is_told_politely_and_nothing_changes(bot, slack, rekognition):
    _, reply = await verdict(bot, rekognition, 0.2)
    await press(bot, reply, "Pneumonia", OUTSIDER)
    refusal = slack.responses[-1]
    assert refusal["response_type"] == "ephemeral"
    assert refusal["text"].startswith("Thanks for looking! Only the configured reviewers")
    assert not slack.calls_to("chat.update")
    assert review_line(bot, reply) == ""
    assert await bot.services.reviews.off_loop(bot.services.reviews.current_all) == {}
    assert (await bot.services.audit.recent(1))[0].action == "refused:review"


async def test_a_button_for_an_unknown_verdict_is_refused_kindly(bot, slack, rekognition):
    _, reply = await verdict(bot, rekognition, 0.2)
    forged = copy.deepcopy(reply)
    for block in forged["blocks"]:
        for element in block.get("elements", []):
            if element.get("type") == "button":
                element["value"] = '{"ts": "1.000000", "f": "F_NOPE"}'
    slack.find_message(CHANNEL, reply["ts"])["blocks"] = forged["blocks"]
    await press(bot, reply, "Normal", REVIEWER)
    assert "no verdict on record" in slack.responses[-1]["text"]
    assert await bot.services.reviews.off_loop(bot.services.reviews.current_all) == {}


# The hand-computed table (model: Pneumonia when its score is 0.9, Normal at 0.1):
#   image  model      reviewer
#   1      Pneumonia  Pneumonia       TP
#   2      Pneumonia  Pneumonia       TP
#   3      Pneumonia  Normal          FP
#   4      Normal     Pneumonia       FN
#   5      Normal     Normal          TN
#   6      Normal     Normal -> corrected from Pneumonia: TN
#   7      Normal     Not assessable  (left out)
# sensitivity 2/3, specificity 2/3, agreement 4/6; Wilson 2/3: 20.8–93.9%, 4/6: 30.0–90.3%.
TABLE = [
    (0.9, ["Pneumonia"]),
    (0.9, ["Pneumonia"]),
    (0.9, ["Normal"]),
    (0.1, ["Pneumonia"]),
    (0.1, ["Normal"]),
    (0.1, ["Pneumonia", "Normal"]),
    (0.1, ["Not assessable"]),
]


async def test_cxr_review_figures_match_the_hand_computed_table(bot, slack, rekognition):
    for i, (score, labels) in enumerate(TABLE):
        _, reply = await verdict(bot, rekognition, score, name=f"{'x' * (i + 1)}.jpeg")
        for label in labels:
            await press(bot, reply, label, REVIEWER)
    await verdict(bot, rekognition, 0.9, name="unreviewed.jpeg")  # counts nowhere

    await bot.post_command(slack.slash_command("review 7", user=OUTSIDER))
    await bot.drain()
    answer = slack.responses[-1]
    assert answer["response_type"] == "ephemeral"
    text = answer["text"]
    assert "Reviewed verdicts, the last 7 days" in text
    assert (
        "*Rekognition cxr.2026-01-01*: 7 of 8 verdicts reviewed, 1 not assessable (left out)"
        in text
    )
    assert "Agreement: 66.7% (95% CI 30.0–90.3%, 4/6)" in text
    assert "Sensitivity (Pneumonia): 66.7% (95% CI 20.8–93.9%, 2/3)" in text
    assert "Specificity (Normal): 66.7% (95% CI 20.8–93.9%, 2/3)" in text
    assert "TP 2 · FN 1 · FP 1 · TN 2" in text

    await bot.post_command(slack.slash_command("status", user=OUTSIDER))
    await bot.drain()
    status = slack.responses[-1]["text"]
    assert "Agreement: 66.7% (95% CI 30.0–90.3%, 4/6)" in status

    # Post chart: a PNG in the ops channel, with the figures as its comment
    chart = next(
        e
        for b in answer["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["text"]["text"] == "Post chart"
    )
    payload = slack.block_action(
        {**chart, "block_id": "review_chart"},
        message={"ts": "1.0", "text": "", "blocks": answer["blocks"]},
        channel=CHANNEL,
        user=OUTSIDER,
    )
    await bot.post_action(payload)
    await bot.drain()
    [upload] = [f for f in slack.files.values() if f.name == "reviewed-verdicts.png"]
    assert upload.channel == OPS
    image = Image.open(io.BytesIO(upload.data))
    assert image.format == "PNG" and image.width > 300
    assert slack.responses[-1]["text"] == f"Posted the chart in <#{OPS}>."


async def test_no_reviewers_configured_means_no_buttons(slack, rekognition, tmp_path):
    harness = await BotHarness(slack, tmp_path / "cxr.db", rekognition=rekognition).start()
    try:
        _, reply = await verdict(harness, rekognition, 0.9)
        assert not [b for b in reply["blocks"] if b["type"] == "actions"]
    finally:
        await harness.stop()


async def test_without_an_ops_channel_the_chart_goes_to_the_askers_dm(slack, rekognition, tmp_path):
    harness = BotHarness(
        slack, tmp_path / "cxr.db", rekognition=rekognition, cxr_reviewers=[REVIEWER]
    )
    await harness.start()
    try:
        _, reply = await verdict(harness, rekognition, 0.9)
        await press(harness, reply, "Pneumonia", REVIEWER)
        await harness.post_command(slack.slash_command("review", user=OUTSIDER))
        await harness.drain()
        answer = slack.responses[-1]
        [block] = [b for b in answer["blocks"] if b["type"] == "actions"]
        payload = slack.block_action(
            {**block["elements"][0], "block_id": block["block_id"]},
            message={"ts": "1.0", "text": "", "blocks": answer["blocks"]},
            channel=CHANNEL,
            user=OUTSIDER,
        )
        await harness.post_action(payload)
        await harness.drain()
        [opened] = slack.calls_to("conversations.open")
        assert opened.params["users"] == OUTSIDER
        [upload] = [f for f in slack.files.values() if f.name == "reviewed-verdicts.png"]
        assert upload.channel == "D0VISITOR"
        assert upload.data.startswith(b"\x89PNG")
    finally:
        await harness.stop()
