"""`/cxr` over the wire: signed slash commands and button presses into the real bot (HTTP), the
answers read from LocalSlack. Rekognition is a stateful before-call hook (`RekognitionWorld`,
shared by the lifecycle watcher and the cost guard); S3 is moto; time is a fake clock."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from bot.core.clock import FakeClock
from bot.localslack import LocalSlack
from tests.harness import VERSION_ARN, BotHarness, rekognition_client
from tests.test_lifecycle_support import (
    DATA_BUCKET,
    OUTPUT,
    POLL,
    LocalModel,
    RekognitionWorld,
    completed,
    make_buckets,
    no_guard,
    put_summary,
    put_tree,
    version,
)

SERVING = "cxr.2026-01-01"  # the version in the harness's CXR_PROJECT_VERSION_ARN
ADMIN = "U0ADMIN01"  # an admin through the user group
MEMBER = "U0CLINIC1"  # not an admin
GROUP = "S0ADMINS1"
LAB = "C0LAB0001"


@pytest.fixture
async def slack():
    async with LocalSlack(usergroups={GROUP: [ADMIN]}) as server:
        yield server


@pytest.fixture
def world():
    return RekognitionWorld(rekognition_client()).add(completed(SERVING))


@pytest.fixture
def clock():
    return FakeClock()


def harness(slack, tmp_path, world, clock, **settings: Any) -> BotHarness:
    return BotHarness(
        slack,
        tmp_path / "cxr.db",
        rekognition=world.client,
        clock=clock,
        guard=no_guard,
        cxr_admins=[GROUP],
        cxr_training_output_s3=OUTPUT,
        cxr_lifecycle_poll_seconds=POLL,
        cxr_cloudwatch_usage=False,
        **settings,
    )


@pytest.fixture
async def bot(slack, tmp_path, world, clock):
    bot = await harness(slack, tmp_path, world, clock).start()
    yield bot
    if world.gate is not None:
        world.gate.set()
    await bot.stop()


async def command(bot: BotHarness, text: str, user: str = ADMIN) -> dict[str, Any]:
    """Post `/cxr <text>`, wait for the work after the ack, return the last response_url body."""
    before = len(bot.slack.responses)
    status, _ = await bot.post_command(bot.slack.slash_command(text, user=user, channel=LAB))
    assert status == 200
    await bot.drain()
    assert len(bot.slack.responses) > before, f"no answer to /cxr {text}"
    return bot.slack.responses[-1]


async def ack_text(bot: BotHarness, text: str, user: str = ADMIN) -> str:
    status, body = await bot.post_command(bot.slack.slash_command(text, user=user, channel=LAB))
    assert status == 200
    return json.loads(body)["text"] if body.startswith("{") else body  # Bolt sends bare text


async def press(bot: BotHarness, proposal: dict[str, Any], action_id: str, user: str) -> None:
    block = next(b for b in proposal["blocks"] if b["type"] == "actions")
    element = next(e for e in block["elements"] if e["action_id"] == action_id)
    message = {"ts": "1760000000.000001", "text": proposal["text"], "blocks": proposal["blocks"]}
    payload = bot.slack.block_action(
        {**element, "block_id": block["block_id"]}, message=message, channel=LAB, user=user
    )
    status, _ = await bot.post_action(payload)
    assert status == 200
    await bot.drain()


async def poll(bot: BotHarness, clock: FakeClock, times: int = 1) -> None:
    """Let the poller take `times` polls. Each waits first for the poll in progress (the one at
    start-up may still be reading): moving the clock while the poller is not asleep on it
    would wake nothing, and it would then sleep a full interval from the new time."""
    for _ in range(times):
        await bot.services.lifecycle.settle()
        await clock.advance(POLL)
        await bot.services.lifecycle.settle()
        if bot.services.cost_guard is not None:
            await bot.services.cost_guard.settle()


def posts(slack: LocalSlack, channel: str = LAB) -> list[str]:
    return [m["text"] for m in slack.bot_messages(channel)]


# --- usage ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "`/cxr status`: the model versions"),
        ("help", "`/cxr train s3://bucket/prefix [version-name]`"),
        ("frobnicate", "I don't know `frobnicate`."),
        ("start cxr.v2 0", "Inference units start at 1."),
        ("start cxr.v2 3 1", "The maximum units can't be below the minimum."),
        ("stop a b", "`/cxr stop` takes at most one version."),
        ("train bucket/prefix", "`bucket/prefix` isn't an S3 location"),
        ("train s3://b/p bad/name", "can't be a version name"),
        ("status now", "`/cxr status` takes no arguments."),
    ],
)
async def test_help_unknown_subcommands_and_bad_arguments_get_the_usage(bot, text, expected):
    answer = await ack_text(bot, text, user=MEMBER)
    assert expected in answer and "`/cxr help`: this message" in answer


# --- permissions ----------------------------------------------------------------------------
async def test_status_is_for_everyone_and_only_the_asker_sees_it(bot, slack):
    response = await command(bot, "status", user=MEMBER)
    assert response["response_type"] == "ephemeral"
    assert "Serving: Rekognition cxr cxr.2026-01-01" in response["text"]
    assert "cxr.2026-01-01: TRAINING_COMPLETED, serving, F1 0.912" in response["text"]


@pytest.mark.parametrize(
    "text", ["start", f"start {SERVING} 2", "stop", "train s3://cxr-data/xrays v9"]
)
async def test_lifecycle_commands_are_for_admins_only(bot, slack, world, text):
    response = await command(bot, text, user=MEMBER)
    assert response["text"] == (
        "Sorry, only the bot's admins can do that. Ask one of them, or run `/cxr status`."
    )
    changes = {"StartProjectVersion", "StopProjectVersion", "CreateDataset"}
    assert not [name for name, _ in world.calls if name in changes]
    [entry] = await bot.services.audit.recent(1)
    assert (entry.actor, entry.action, entry.result) == (
        MEMBER,
        text.split()[0],
        "refused: not an admin",
    )


# --- start ----------------------------------------------------------------------------------
async def test_start_shows_the_cost_asks_and_posts_when_running(bot, slack, world, clock):
    proposal = await command(bot, f"start {SERVING} 1 2")
    assert "Start cxr.2026-01-01 with 1–2 inference units (auto-scaling)?" in proposal["text"]
    assert "$4.00–$8.00/hour" in proposal["text"]

    await press(bot, proposal, "lifecycle.start.confirm", user=MEMBER)  # not an admin
    refusal = slack.responses[-1]
    assert "only the bot's admins" in refusal["text"] and refusal["replace_original"] is False
    assert not world.called("StartProjectVersion")

    await press(bot, proposal, "lifecycle.start.confirm", user=ADMIN)  # an admin by group
    confirmed = slack.responses[-1]
    assert confirmed["replace_original"] is True
    assert confirmed["text"].startswith(
        "<@U0ADMIN01> confirmed: starting cxr.2026-01-01 with 1–2 inference units"
    )
    assert world.called("StartProjectVersion") == [
        {"ProjectVersionArn": VERSION_ARN, "MinInferenceUnits": 1, "MaxInferenceUnits": 2}
    ]

    again = await command(bot, f"start {SERVING}")  # a second start while starting
    assert "is already starting (asked by you" in again["text"]
    assert len(world.called("StartProjectVersion")) == 1

    await poll(bot, clock)
    assert posts(slack) == []
    world.set(SERVING, "RUNNING")
    await poll(bot, clock)
    [running] = posts(slack)
    assert running.startswith(
        "cxr.2026-01-01 is running with 1–2 inference units (auto-scaling) "
        "(started by <@U0ADMIN01>, took 1 min)"
    )
    status = await command(bot, "status", user=MEMBER)
    assert "running 0 min, about $0.00 so far" in status["text"]
    assert "<@U0ADMIN01> start cxr.2026-01-01: ok: RUNNING" in status["text"]


async def test_cancel_leaves_the_model_alone(bot, slack, world):
    proposal = await command(bot, "start")
    await press(bot, proposal, "lifecycle.start.cancel", user=ADMIN)
    assert slack.responses[-1]["text"] == (
        "<@U0ADMIN01> cancelled: cxr.2026-01-01 was not started."
    )
    assert slack.responses[-1]["replace_original"] is True
    assert not world.called("StartProjectVersion")


async def test_a_failed_start_is_posted_with_the_reason(bot, slack, world, clock):
    proposal = await command(bot, "start")
    await press(bot, proposal, "lifecycle.start.confirm", user=ADMIN)
    world.set(SERVING, "FAILED")
    world.versions[SERVING]["StatusMessage"] = "Insufficient capacity."
    await poll(bot, clock)
    assert posts(slack) == [
        "cxr.2026-01-01 failed to start (asked by <@U0ADMIN01>): Insufficient capacity."
    ]


# --- stop -----------------------------------------------------------------------------------
async def test_stop_posts_when_stopped(slack, tmp_path, world, clock):
    world.set(SERVING, "RUNNING", MinInferenceUnits=1)
    bot = await harness(slack, tmp_path, world, clock).start()
    try:
        await bot.services.runs.open_run(VERSION_ARN, clock.now(), 1, "bot")
        await clock.advance(3600)
        await bot.services.cost_guard.settle()  # its hourly poll must not overlap the stop
        stopping = await command(bot, "stop")
        assert stopping["text"] == (
            "Stopping cxr.2026-01-01 (running for 1 h 00 min, about $4.00 so far). I'll post in "
            "this channel when it has stopped."
        )
        again = await command(bot, f"stop {SERVING}")
        assert "cxr.2026-01-01 is stopping (asked by you" in again["text"]
        assert len(world.called("StopProjectVersion")) == 1
        world.set(SERVING, "STOPPED")
        await poll(bot, clock)
        assert posts(slack) == [
            "cxr.2026-01-01 has stopped (asked by <@U0ADMIN01>). It ran for 1 h 00 min, an "
            "estimated $4.03."
        ]
        stopped = await command(bot, "stop")
        assert "nothing to stop" in stopped["text"]
    finally:
        await bot.stop()


# --- the 3-second rule ----------------------------------------------------------------------
async def test_commands_are_acknowledged_before_aws_answers(bot, slack, world):
    world.gate = threading.Event()  # every Rekognition call now waits
    status, body = await bot.post_command(slack.slash_command("status", user=MEMBER, channel=LAB))
    assert status == 200 and body == ""  # acknowledged, nothing to say yet
    assert slack.responses == []  # the answer waits on AWS
    checking = await ack_text(bot, f"train s3://{DATA_BUCKET}/xrays")
    assert checking.startswith(f"Checking `s3://{DATA_BUCKET}/xrays`")
    world.gate.set()
    await bot.drain()
    assert any("Serving:" in r["text"] for r in slack.responses)


# --- train ----------------------------------------------------------------------------------
@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        make_buckets(client)
        yield client


async def test_train_refusal_lists_the_files_that_arent_images(bot, slack, s3):
    put_tree(s3)
    s3.put_object(Bucket=DATA_BUCKET, Key="xrays/Pneumonia/notes.docx", Body=b"PK\x03\x04")
    response = await command(bot, f"train s3://{DATA_BUCKET}/xrays v2")
    assert response["text"].startswith("I can't train from s3://cxr-data/xrays/:")
    assert "• `Pneumonia/notes.docx`" in json.dumps(response["blocks"], ensure_ascii=False)
    assert posts(slack) == []


async def test_training_survives_a_restart_and_reports_in_its_channel(
    slack, tmp_path, world, clock, s3
):
    put_tree(s3)
    first = await harness(slack, tmp_path, world, clock).start()
    try:
        started = await command(first, f"train s3://{DATA_BUCKET}/xrays v2")
        assert started["text"].startswith("Training v2 from s3://cxr-data/xrays/: 20 images")
        [progress] = slack.bot_messages(LAB)
        assert (
            "Training v2 from s3://cxr-data/xrays/ (10 Normal, 10 Pneumonia images)"
            in (progress["text"])
        )
        await poll(first, clock, 5)  # create, importing, imported: split, splitting, train
        assert world.versions["v2"]["Status"] == "TRAINING_IN_PROGRESS"
        assert "Now: training. 16 training and 4 test images." in progress["text"]  # updated
        again = await command(first, f"train s3://{DATA_BUCKET}/xrays v3")
        assert "v2 is already training (asked by you" in again["text"]
    finally:
        await first.stop()  # the bot goes down mid-training

    put_summary(s3, "v2")
    world.add(completed("v2", billable=3600))
    later = FakeClock(datetime(2026, 1, 5, 13, 0, tzinfo=UTC))
    second = await harness(slack, tmp_path, world, later).start()
    try:
        await slack.wait_for(
            lambda: any("Training v2 finished" in text for text in posts(slack)),
            what="the training outcome",
        )
    finally:
        await second.stop()
    finished = next(text for text in posts(slack) if "Training v2 finished" in text)
    assert finished.startswith("Training v2 finished (asked by <@U0ADMIN01>): F1 0.912.")
    assert "Billable training time 1 h 00 min, an estimated $1.00." in finished
    assert slack.bot_messages("C0CLINIC1") == []  # only where it was asked for


# --- the local model alone ------------------------------------------------------------------
async def test_with_only_the_local_model_status_shows_its_card(slack, tmp_path, clock):
    bot = await BotHarness(
        slack, tmp_path / "cxr.db", local=LocalModel(), guard=no_guard, clock=clock
    ).start()
    try:
        bot.services.lifecycle.model_card = lambda: {
            "name": "cxr-cnn",
            "version": "v1",
            "metrics": {"validation": {"accuracy": 0.9, "n": 100}},
        }
        status = await command(bot, "status", user=MEMBER)
        assert "Serving: local cxr-cnn v1" in status["text"]
        assert "Validation: accuracy 90.0% (n = 100)" in status["text"]
        for text in ("start", "stop", "train s3://cxr-data/xrays"):
            answer = await command(bot, text, user=MEMBER)
            assert "manages a Rekognition Custom Labels model" in answer["text"]
            assert "CXR_PROJECT_ARN" in answer["text"]
    finally:
        await bot.stop()


async def test_version_names_for_status_come_from_rekognition(bot, slack, world):
    world.add(version("cxr.v3", "TRAINING_FAILED", message="Too few <images> & labels."))
    response = await command(bot, "status")
    assert "cxr.v3: TRAINING_FAILED" in response["text"]
    assert "Too few &lt;images&gt; &amp; labels." in json.dumps(response["blocks"])
