"""`/cxr promote` at the wire: a better and a worse candidate (the worse one needs two
confirmations), serving switched only once the candidate runs, the old version offered for a
stop, a restart in the middle of a promotion, and the comparison on reviewed cases.

Rekognition is the stateful before-call hook the lifecycle wire tests use (`RekognitionWorld`:
every answer validated against the service model, whoever polls), S3 is moto, time is fake."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

import boto3
import pytest
from moto import mock_aws

from bot.core.clock import FakeClock
from bot.localslack import LocalSlack
from tests.harness import BotHarness, labels_response, open_database, rekognition_client
from tests.test_core_loop import xray_jpeg
from tests.test_lifecycle_support import (
    OUTPUT,
    POLL,
    RekognitionWorld,
    arn,
    completed,
    make_buckets,
    no_guard,
    put_summary,
)

SERVING = "cxr.2026-01-01"  # the harness's CXR_PROJECT_VERSION_ARN
ADMIN = "U0ADMIN01"
REVIEWER = "U0REVIEW1"
MEMBER = "U0CLINIC1"
LAB = "C0LAB0001"


class World(RekognitionWorld):
    """…that also answers DetectCustomLabels: per version, the next pneumonia score queued."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.scores: dict[str, list[float]] = defaultdict(list)

    def _DetectCustomLabels(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["ProjectVersionArn"].split("/version/")[1].split("/")[0]
        return labels_response(self.scores[name].pop(0))


@pytest.fixture
async def slack():
    async with LocalSlack() as server:
        yield server


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        make_buckets(client)
        yield client


@pytest.fixture
def world():
    world = World(rekognition_client())
    world.add(completed(SERVING, f1=0.90))
    world.set(SERVING, "RUNNING", MinInferenceUnits=1)
    return world


def harness(slack, tmp_path, world, clock, **settings: Any) -> BotHarness:
    return BotHarness(
        slack,
        tmp_path / "cxr.db",
        rekognition=world.client,
        clock=clock,
        guard=no_guard,
        cxr_admins=[ADMIN],
        cxr_reviewers=[REVIEWER],
        cxr_training_output_s3=OUTPUT,
        cxr_lifecycle_poll_seconds=POLL,
        cxr_cloudwatch_usage=False,
        **settings,
    )


async def command(bot: BotHarness, text: str, user: str = ADMIN) -> dict[str, Any]:
    before = len(bot.slack.responses)
    status, _ = await bot.post_command(bot.slack.slash_command(text, user=user, channel=LAB))
    assert status == 200
    await bot.drain()
    assert len(bot.slack.responses) > before
    return bot.slack.responses[-1]


async def press(bot: BotHarness, message: dict[str, Any], label: str, user: str = ADMIN):
    for block in message["blocks"]:
        for element in block.get("elements", []):
            if element.get("type") == "button" and element["text"]["text"].startswith(label):
                payload = bot.slack.block_action(
                    {**element, "block_id": block["block_id"]},
                    message={"ts": "1760000000.000001", **message},
                    channel=LAB,
                    user=user,
                )
                status, _ = await bot.post_action(payload)
                assert status == 200
                await bot.drain()
                return bot.slack.responses[-1] if bot.slack.responses else None
    raise AssertionError(f"no {label!r} button in {message.get('text')!r}")


async def poll(bot: BotHarness, clock: FakeClock, times: int = 1) -> None:
    for _ in range(times):
        if bot.services.promoter is not None:
            await bot.services.promoter.settle()  # paused on the clock: the advance wakes it
        await clock.advance(POLL)
        await bot.services.lifecycle.settle()


def serving_arn(bot: BotHarness) -> str:
    return bot.services.router.primary.version_arn


async def test_a_better_candidate_starts_switches_when_running_and_offers_the_old_stop(
    slack, tmp_path, world, s3
):
    put_summary(s3, "cxr.v3", f1=0.95)
    put_summary(s3, SERVING, f1=0.90)
    world.add(completed("cxr.v3", f1=0.95))
    clock = FakeClock()
    bot = await harness(slack, tmp_path, world, clock).start()
    try:
        refused = await command(bot, "promote cxr.v3", user=MEMBER)
        assert refused["text"].startswith("Sorry, only the bot's admins")

        proposal = await command(bot, "promote cxr.v3")
        text = proposal["text"]
        assert "Promote cxr.v3* in place of *cxr.2026-01-01*" in text
        assert "F1 from Rekognition's evaluation (in-distribution" in text
        assert "(reviewed cases not used: cxr.v3 isn't running)" in text
        assert (
            "Candidate *cxr.v3*: F1 0.950 (Normal: precision 87.5%, recall 90.0%; "
            "Pneumonia: precision 95.0%, recall 91.0%)"
        ) in text
        assert "Served *cxr.2026-01-01*: F1 0.900" in text
        assert "at least as good" in text

        started = await press(bot, proposal, "Promote cxr.v3")
        assert started["text"].startswith(":hourglass_flowing_sand: Starting *cxr.v3* (1 unit)")
        assert world.called("StartProjectVersion") == [
            {"ProjectVersionArn": arn("cxr.v3"), "MinInferenceUnits": 1}
        ]
        await poll(bot, clock)  # STARTING: the served version still serves
        assert serving_arn(bot) == arn(SERVING)
        status = await command(bot, "status", user=MEMBER)
        assert f"Promoting *cxr.v3* (asked by <@{ADMIN}>" in status["text"]

        world.set("cxr.v3", "RUNNING", MinInferenceUnits=1)
        await poll(bot, clock)
        await slack.wait_for(
            lambda: any("now serves" in m["text"] for m in slack.bot_messages(LAB))
        )
        assert serving_arn(bot) == arn("cxr.v3")
        assert (await bot.services.serving.served()).version_arn == arn("cxr.v3")
        assert (await bot.services.serving.served()).by == ADMIN
        # both bill while they overlap: the candidate's run is open beside the old one's
        assert {r.version_arn for r in await bot.services.runs.open_runs()} == {
            arn(SERVING),
            arn("cxr.v3"),
        }

        [switched] = [m for m in slack.bot_messages(LAB) if "now serves" in m["text"]]
        assert "*cxr.2026-01-01* is still running and billing" in switched["text"]
        await press(bot, switched, "Stop cxr.2026-01-01")
        assert world.called("StopProjectVersion") == [{"ProjectVersionArn": arn(SERVING)}]

        status = await command(bot, "status", user=MEMBER)
        assert "Serving *cxr.v3*" in status["text"]
        assert "`CXR_PROJECT_VERSION_ARN` names *cxr.2026-01-01*" in status["text"]
    finally:
        await bot.stop()


async def test_a_worse_candidate_is_refused_unless_confirmed_twice(slack, tmp_path, world, s3):
    put_summary(s3, "cxr.v3", f1=0.80)
    put_summary(s3, SERVING, f1=0.90)
    world.add(completed("cxr.v3", f1=0.80))
    world.set("cxr.v3", "RUNNING", MinInferenceUnits=1)  # running, but no reviewed cases yet
    clock = FakeClock()
    bot = await harness(slack, tmp_path, world, clock).start()
    try:
        proposal = await command(bot, "promote cxr.v3")
        assert "The candidate is *worse* by this measure." in proposal["text"]
        assert "0 reviewed cases, fewer than 30" in proposal["text"]
        second = await press(bot, proposal, "Promote anyway")
        assert "is worse than *cxr.2026-01-01*" in second["text"]
        assert (
            "in-distribution: its own test split): cxr.v3 0.800 vs cxr.2026-01-01 0.900"
            in (second["text"])
        )
        assert serving_arn(bot) == arn(SERVING)  # one press changed nothing
        assert await bot.services.serving.served() is None

        cancelled = await press(bot, second, "Cancel")
        assert "cancelled; nothing changed" in cancelled["text"]
        assert serving_arn(bot) == arn(SERVING)

        second = await press(bot, await press(bot, proposal, "Promote anyway"), "Yes, promote")
        assert second["text"].startswith(":white_check_mark: *cxr.v3* now serves")
        assert serving_arn(bot) == arn("cxr.v3")
        assert not world.called("StartProjectVersion")  # it ran already
        actions = [(a.action, a.result) for a in await bot.services.audit.recent(10)]
        assert ("promote", "requested (worse, confirmed twice)") in actions
    finally:
        await bot.stop()


async def test_only_admins_press_promote_buttons_and_a_garbled_one_has_expired(
    slack, tmp_path, world, s3
):
    world.add(completed("cxr.v3", f1=0.95))
    bot = await harness(slack, tmp_path, world, FakeClock()).start()
    try:
        proposal = await command(bot, "promote cxr.v3")
        for label in ("Promote cxr.v3", "Cancel"):
            refusal = await press(bot, proposal, label, user=MEMBER)
            assert refusal["text"].startswith("Sorry, only the bot's admins")
            assert refusal["response_type"] == "ephemeral" and refusal["replace_original"] is False
        garbled = {
            "type": "button",
            "action_id": "promote_confirm",
            "text": {"type": "plain_text", "text": "Promote"},
            "value": "{not json",
        }
        expired = await press(
            bot, {"text": "?", "blocks": [{"block_id": "p", "elements": [garbled]}]}, "Promote"
        )
        assert expired["text"] == "This button no longer works. Run `/cxr promote VERSION` again."
        assert expired["response_type"] == "ephemeral" and expired["replace_original"] is False
        assert not world.called("StartProjectVersion")
        assert "Promoting" not in (await command(bot, "status", user=MEMBER))["text"]
    finally:
        await bot.stop()


async def test_a_restart_in_the_middle_of_a_promotion_still_switches(slack, tmp_path, world, s3):
    world.add(completed("cxr.v3", f1=0.95))
    clock = FakeClock()
    first = await harness(slack, tmp_path, world, clock).start()
    try:
        proposal = await command(first, "promote cxr.v3")
        await press(first, proposal, "Promote cxr.v3")
        assert world.versions["cxr.v3"]["Status"] == "STARTING"
    finally:
        await first.stop()  # down while the candidate starts

    world.set("cxr.v3", "RUNNING", MinInferenceUnits=1)
    second = await harness(slack, tmp_path, world, FakeClock()).start()
    try:
        await slack.wait_for(
            lambda: any("now serves" in m["text"] for m in slack.bot_messages(LAB)),
            what="the switch after the restart",
        )
        assert serving_arn(second) == arn("cxr.v3")
    finally:
        await second.stop()
    # and the promotion outlives this restart too: the stored version wins over the setting
    third = await harness(slack, tmp_path, world, FakeClock()).start()
    try:
        assert serving_arn(third) == arn("cxr.v3")
        assert await third.services.serving.in_flight() is None
    finally:
        await third.stop()


async def test_on_enough_reviewed_cases_both_versions_answer_the_same_images(
    slack, tmp_path, world, s3
):
    world.add(completed("cxr.v3", f1=0.80))  # worse by F1…
    world.set("cxr.v3", "RUNNING", MinInferenceUnits=1)
    clock = FakeClock()
    bot = await harness(slack, tmp_path, world, clock, cxr_promote_min_reviewed=3).start()
    try:
        truths = ["Pneumonia", "Normal", "Pneumonia", "Normal"]
        world.scores[SERVING] += [0.9, 0.1, 0.9, 0.1]  # the verdicts as posted
        for i, truth in enumerate(truths):
            envelope = await bot.share(LAB, [(f"x{i}.jpeg", xray_jpeg(seed=i))])
            await bot.drain()
            [reply] = [
                m for m in slack.bot_messages(LAB) if m.get("thread_ts") == envelope["event"]["ts"]
            ]
            await press(bot, slack.find_message(LAB, reply["ts"]), truth, REVIEWER)
        # …but on the reviewed images the candidate is right 4/4, the served version 2/4
        world.scores["cxr.v3"] += [0.9, 0.1, 0.9, 0.1]
        world.scores[SERVING] += [0.9, 0.9, 0.1, 0.1]
        downloads = len(slack.downloads)
        proposal = await command(bot, "promote cxr.v3")
        text = proposal["text"]
        assert "agreement with reviewers on the same 4 reviewed cases" in text
        assert "Candidate *cxr.v3*: agreement 100.0% (95% CI 51.0–100.0%, 4/4)" in text
        assert "Served *cxr.2026-01-01*: agreement 50.0% (95% CI 15.0–85.0%, 2/4)" in text
        assert "at least as good" in text
        assert (
            "only the candidate right on 2, only the served version right on 0 "
            "(exact McNemar p = 0.50)"
        ) in text  # a better point estimate, yet too few discordant cases to tell
        assert len(slack.downloads) == downloads + 4  # fetched again from Slack, not stored
        assert not world.scores["cxr.v3"] and not world.scores[SERVING]
    finally:
        await bot.stop()


def test_the_proposal_value_carries_no_patient_data():
    from bot.core.learning.promote import PromoteProposal, one_line
    from bot.core.review.figures import Proportion
    from bot.core.review.promotion import on_reviews
    from bot.slack.blocks import render

    proposal = PromoteProposal(
        candidate="v3",
        candidate_arn=arn("v3"),
        served="v2",
        comparison=(comparison := on_reviews("v3", "v2", Proportion(3, 4), Proportion(2, 4))),
        summary=one_line(comparison),
    )
    [buttons] = [b for b in render(proposal).blocks if b["type"] == "actions"]
    value = json.loads(buttons["elements"][0]["value"])
    assert set(value) == {"arn", "name", "served", "step", "units", "worse", "why"}
    assert value["why"].endswith("v3 0.750 vs v2 0.500")


async def test_a_promotion_recorded_but_never_sent_is_started_after_the_restart(
    slack, tmp_path, world
):
    """The bot went down between recording the promotion and asking Rekognition to start."""
    from bot.state.serving import ServingStore

    world.add(completed("cxr.v3", f1=0.95))
    db = open_database(tmp_path / "cxr.db")
    await ServingStore(db).open_promotion(
        arn("cxr.v3"), arn(SERVING), LAB, ADMIN, 2, FakeClock().now()
    )
    db.close()

    clock = FakeClock()
    bot = await harness(slack, tmp_path, world, clock).start()
    try:
        for _ in range(200):  # the world doesn't wake LocalSlack's waiters: look every 50 ms
            if world.called("StartProjectVersion"):
                break
            await asyncio.sleep(0.05)
        assert world.called("StartProjectVersion") == [
            {"ProjectVersionArn": arn("cxr.v3"), "MinInferenceUnits": 2}
        ]
        assert serving_arn(bot) == arn(SERVING)
        world.set("cxr.v3", "RUNNING", MinInferenceUnits=2)
        await clock.advance(POLL)
        await slack.wait_for(
            lambda: any("now serves" in m["text"] for m in slack.bot_messages(LAB)),
            what="the switch",
        )
        assert serving_arn(bot) == arn("cxr.v3")
        assert len(world.called("StartProjectVersion")) == 1  # asked once, not on every poll
    finally:
        await bot.stop()


async def test_two_instances_on_one_database_switch_together_and_say_it_once(
    slack, tmp_path, world
):
    world.add(completed("cxr.v3", f1=0.95))
    clocks = FakeClock(), FakeClock()
    first = await harness(slack, tmp_path, world, clocks[0]).start()
    second = await harness(slack, tmp_path, world, clocks[1]).start()
    try:
        proposal = await command(first, "promote cxr.v3")
        await press(first, proposal, "Promote cxr.v3")
        world.set("cxr.v3", "RUNNING", MinInferenceUnits=1)
        for _ in range(3):
            for bot, clock in zip((first, second), clocks, strict=True):
                assert bot.services.promoter is not None
                await bot.services.promoter.settle()  # paused, so the advance wakes it
                await clock.advance(POLL)
        await slack.wait_for(
            lambda: serving_arn(first) == serving_arn(second) == arn("cxr.v3"),
            what="both instances serving the candidate",
        )
        said = [m for m in slack.bot_messages(LAB) if "now serves" in m["text"]]
        assert len(said) == 1
        assert len(world.called("StartProjectVersion")) == 1
    finally:
        await second.stop()
        await first.stop()
