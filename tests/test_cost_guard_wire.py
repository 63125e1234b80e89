"""The cost guard over the wire: the real bot (BotHarness) with a fake clock, LocalSlack for the
ops channel and the buttons, Rekognition answered by a botocore event hook (moto can't do the
model lifecycle) and CloudWatch by moto.

moto's GetMetricData buckets datapoints from StartTime (not from period boundaries) and
returns their timestamps in local time; the adapter floors StartTime to the minute and
converts to UTC, so its buckets line up with CloudWatch's one-minute periods.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from bot.core.clock import FakeClock
from tests.harness import (
    PROJECT_ARN,
    VERSION_ARN,
    BotHarness,
    labels_response,
    rekognition_client,
)
from tests.synthetic import chest_xray, jpeg_bytes

OPS = "C0OPS0001"
CLINIC = "C0CLINIC1"
ADMIN = "U0ADMIN01"
NOBODY = "U0CLINIC1"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # Monday 09:00 UTC
VERSION = "cxr.2026-01-01"
DIMENSIONS = [
    {"Name": "ProjectName", "Value": "cxr"},
    {"Name": "VersionName", "Value": VERSION},
]


class ConsoleRekognition:
    """A Rekognition project that people also drive from the console: versions change state
    behind the bot's back. Answers DescribeProjectVersions, Start/StopProjectVersion and
    DetectCustomLabels through botocore's event hooks: the API parameters are taken at
    before-parameter-build, botocore validates them, and before-call answers instead of AWS."""

    def __init__(self, client: Any, clock: FakeClock) -> None:
        self.client = client
        self.clock = clock
        self.status = "STOPPED"
        self.units = 1
        self.calls: list[str] = []
        self._params: dict[str, Any] = {}
        client.meta.events.register("before-parameter-build.rekognition", self._take_params)
        client.meta.events.register("before-call.rekognition", self._answer)

    def _take_params(self, params, **_: Any) -> None:
        self._params = dict(params)

    def _answer(self, model, **_: Any):
        params = self._params
        self.calls.append(model.name)
        if model.name == "DescribeProjectVersions":
            assert params["ProjectArn"] == PROJECT_ARN
            body = {
                "ProjectVersionDescriptions": [
                    {
                        "ProjectVersionArn": VERSION_ARN,
                        "Status": self.status,
                        "CreationTimestamp": datetime(2026, 1, 1, tzinfo=UTC),
                        "MinInferenceUnits": self.units,
                    }
                ]
            }
        elif model.name == "StopProjectVersion":
            assert params["ProjectVersionArn"] == VERSION_ARN
            self.status = "STOPPING"
            body = {"Status": "STOPPING"}
        elif model.name == "StartProjectVersion":
            self.status = "STARTING"
            body = {"Status": "STARTING"}
        elif model.name == "DetectCustomLabels":
            body = labels_response(0.1)
        else:
            raise AssertionError(f"unexpected Rekognition call {model.name}")
        return AWSResponse("https://rekognition", 200, {}, None), body


@pytest.fixture
def cloudwatch():
    with mock_aws():
        yield boto3.client("cloudwatch", region_name="us-east-1")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def console(clock) -> ConsoleRekognition:
    return ConsoleRekognition(rekognition_client(), clock)


def bot_settings(**overrides: Any) -> dict[str, Any]:
    return {
        "cxr_ops_channel": OPS,
        "cxr_admins": [ADMIN],
        "cxr_spend_summary_time": None,
        "cxr_watch_interval_minutes": 5,
        **overrides,
    }


async def started(slack, tmp_path, console, clock, **settings: Any) -> BotHarness:
    bot = BotHarness(
        slack,
        tmp_path / "cxr.db",
        rekognition=console.client,
        clock=clock,
        **bot_settings(**settings),
    )
    await bot.start()
    await ticks_done(bot, 1)  # the watcher polls once at start
    await bot.services.lifecycle.settle()  # and is asleep on the clock
    return bot


async def ticks_done(bot: BotHarness, count: int, within: float = 10.0) -> None:
    guard = bot.services.cost_guard
    deadline = asyncio.get_running_loop().time() + within
    while guard.ticks < count:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the watcher made {guard.ticks} polls, not {count}")
        await asyncio.sleep(0.002)


async def run_for(bot: BotHarness, clock: FakeClock, minutes: int) -> None:
    """Let time pass one poll interval at a time, waiting for the watcher's poll each time."""
    guard = bot.services.cost_guard
    step = guard.config.interval.total_seconds()
    for _ in range(round(minutes * 60 / step)):
        before = guard.ticks
        await clock.advance(step)
        await ticks_done(bot, before + 1)
        await bot.services.lifecycle.settle()  # no poll left in flight (busy polls are quicker)


def put_metric(cloudwatch, name: str, at: datetime, value: float) -> None:
    cloudwatch.put_metric_data(
        Namespace="AWS/Rekognition",
        MetricData=[
            {"MetricName": name, "Dimensions": DIMENSIONS, "Timestamp": at, "Value": value}
        ],
    )


def in_service(cloudwatch, start: datetime, end: datetime) -> None:
    """InServiceInferenceUnits datapoints, one a minute, as a running model emits them."""
    at = start
    while at < end:
        put_metric(cloudwatch, "InServiceInferenceUnits", at, 1)
        at += timedelta(minutes=1)


def alerts(slack) -> list[dict[str, Any]]:
    return [
        m
        for m in slack.bot_messages(OPS)
        if not m.get("thread_ts") and "Idle model" in m.get("text", "")
    ]


def thread(slack, ts: str) -> list[dict[str, Any]]:
    return [m for m in slack.bot_messages(OPS) if m.get("thread_ts") == ts]


def press(slack, message: dict[str, Any], label: str, user: str) -> dict[str, Any]:
    """The block_actions payload for pressing the button labelled `label` on `message`."""
    for block in message["blocks"]:
        for element in block.get("elements", []):
            if element.get("type") == "button" and element["text"]["text"] == label:
                action = {**element, "block_id": block["block_id"]}
                return slack.block_action(action, message=message, channel=OPS, user=user)
    raise AssertionError(f"no {label!r} button on the message")


def buttons(message: dict[str, Any]) -> list[str]:
    return [
        e["text"]["text"]
        for b in message["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    ]


async def test_console_started_model_left_idle_alerts_once_then_reminds_in_thread(
    slack, tmp_path, console, clock, cloudwatch
):
    console.status = "RUNNING"  # started in the console at 08:40, nobody uses it
    in_service(cloudwatch, T0 - timedelta(minutes=20), T0 + timedelta(hours=2))
    bot = await started(slack, tmp_path, console, clock)
    try:
        run = await bot.services.runs.current(VERSION_ARN)
        assert run.started_at == T0 - timedelta(minutes=20) and run.source == "observed"
        await run_for(bot, clock, 5)  # 09:05, idle 25 min
        assert alerts(slack) == []
        await run_for(bot, clock, 5)  # 09:10: 30 min idle
        [alert] = alerts(slack)
        assert "Idle model: cxr.2026-01-01 has served no request for 30 min" in alert["text"]
        assert "1 inference unit at $4.00/h" in alert["text"]
        assert "idle since Mon 5 Jan 08:40 UTC, $2.00 spent idle so far" in alert["text"]
        assert buttons(alert) == ["Stop now", "Keep running 1 h", "Keep running 4 h"]
        await run_for(bot, clock, 90)  # to 10:40 = 2 h idle: reminders at 1 h and 2 h
        assert len(alerts(slack)) == 1
        reminders = thread(slack, alert["ts"])
        assert [r["text"].split(":")[0] for r in reminders] == ["Reminder", "Reminder"]
        assert (
            "still running idle: 2 h 00 min without a request, $8.00 so far" in reminders[1]["text"]
        )
        # the alert itself was refreshed in place
        assert "no request for 2 h 00 min" in slack.find_message(OPS, alert["ts"])["text"]
    finally:
        await bot.stop()


async def test_another_clients_traffic_keeps_the_model_alive(
    slack, tmp_path, console, clock, cloudwatch
):
    console.status = "RUNNING"
    in_service(cloudwatch, T0, T0 + timedelta(hours=4))
    bot = await started(slack, tmp_path, console, clock)
    try:
        # A script calls the model every 25 minutes for two hours; CloudWatch sees it.
        for i in range(5):
            put_metric(
                cloudwatch, "SuccessfulRequestCount", T0 + timedelta(minutes=25 * i, seconds=30), 3
            )
        await run_for(bot, clock, 130)
        assert alerts(slack) == []
        watch = await bot.services.cost_guard.store.watch(VERSION_ARN)
        assert watch.last_request_at == T0 + timedelta(minutes=101)  # the 100-min datapoint's end
        await run_for(bot, clock, 5)  # 11:15: 34 min since the last request
        [alert] = alerts(slack)
        assert "no request for 34 min" in alert["text"]
    finally:
        await bot.stop()


async def test_the_bots_own_classifications_keep_the_model_alive(
    slack, tmp_path, console, clock, cloudwatch
):
    console.status = "RUNNING"
    bot = await started(slack, tmp_path, console, clock)
    try:
        for i in range(3):
            await run_for(bot, clock, 20)
            await bot.share(CLINIC, [(f"xray{i}.jpeg", jpeg_bytes(chest_xray(seed=i)))])
            await bot.drain()
        assert "DetectCustomLabels" in console.calls
        await run_for(bot, clock, 25)
        assert alerts(slack) == []
        await run_for(bot, clock, 5)
        assert len(alerts(slack)) == 1
    finally:
        await bot.stop()


async def test_snooze_then_alert_again(slack, tmp_path, console, clock, cloudwatch):
    console.status = "RUNNING"
    bot = await started(slack, tmp_path, console, clock)
    try:
        await run_for(bot, clock, 30)
        [alert] = alerts(slack)
        status, _ = await bot.post_action(press(slack, alert, "Keep running 1 h", ADMIN))
        assert status == 200
        await bot.drain()
        shown = slack.find_message(OPS, alert["ts"])
        assert f"Kept running by <@{ADMIN}> at 09:30 UTC until 10:30 UTC" in shown["text"]
        assert buttons(shown) == ["Stop now"]
        await run_for(bot, clock, 55)
        assert thread(slack, alert["ts"]) == []
        await run_for(bot, clock, 5)
        [reminder] = thread(slack, alert["ts"])
        assert reminder["text"].startswith(f"The snooze by <@{ADMIN}> is over")
        assert buttons(slack.find_message(OPS, alert["ts"])) == [
            "Stop now",
            "Keep running 1 h",
            "Keep running 4 h",
        ]
        assert len(alerts(slack)) == 1
    finally:
        await bot.stop()


async def test_auto_stop(slack, tmp_path, console, clock, cloudwatch):
    console.status = "RUNNING"
    bot = await started(
        slack, tmp_path, console, clock, cxr_auto_stop_minutes=60, cxr_sole_client=True
    )
    try:
        await run_for(bot, clock, 55)
        assert "StopProjectVersion" not in console.calls
        await run_for(bot, clock, 5)
        assert console.calls.count("StopProjectVersion") == 1
        assert await bot.services.runs.current(VERSION_ARN) is not None  # STOPPING is billed
        assert bot.services.router._primary_down_at == clock.now()  # fallback told at once
        console.status = "STOPPED"
        await run_for(bot, clock, 5)  # the stop is confirmed at STOPPED, then reported
        [alert] = alerts(slack)
        [stopped] = [m for m in thread(slack, alert["ts"]) if m["text"].startswith("Stopped")]
        assert (
            "Stopped cxr.2026-01-01 automatically after 1 h 00 min without a request"
            in (stopped["text"])
        )
        assert "`/cxr start cxr.2026-01-01`" in stopped["text"]
        assert "stopped automatically at 10:00 UTC" in slack.find_message(OPS, alert["ts"])["text"]
        services = bot.services
        assert await services.runs.current(VERSION_ARN) is None
        [entry] = [e for e in await services.audit.recent(10) if e.action == "stop"]
        assert (entry.actor, entry.target) == ("cost-guard", VERSION)
        await run_for(bot, clock, 60)
        assert console.calls.count("StopProjectVersion") == 1
    finally:
        await bot.stop()


async def test_a_non_admin_pressing_stop_is_refused_and_the_alert_is_unchanged(
    slack, tmp_path, console, clock, cloudwatch
):
    console.status = "RUNNING"
    bot = await started(slack, tmp_path, console, clock)
    try:
        await run_for(bot, clock, 30)
        [alert] = alerts(slack)
        before = json.dumps(slack.find_message(OPS, alert["ts"]), sort_keys=True)
        status, _ = await bot.post_action(press(slack, alert, "Stop now", NOBODY))
        assert status == 200
        await bot.drain()
        assert "StopProjectVersion" not in console.calls
        [refusal] = slack.responses
        assert refusal["response_type"] == "ephemeral"
        assert "only the bot's admins can do that" in refusal["text"]
        assert json.dumps(slack.find_message(OPS, alert["ts"]), sort_keys=True) == before
        assert slack.calls_to("chat.update") == []
        [entry] = [e for e in await bot.services.audit.recent(10) if e.actor == NOBODY]
        assert entry.action == "refused:stop"
    finally:
        await bot.stop()


async def test_a_restart_between_the_alert_and_the_button_press(
    slack, tmp_path, console, clock, cloudwatch
):
    console.status = "RUNNING"
    first = await started(slack, tmp_path, console, clock)
    await run_for(first, clock, 40)
    [alert] = alerts(slack)
    await first.stop()

    second = await started(slack, tmp_path, console, clock)
    try:
        await run_for(second, clock, 10)
        assert len(alerts(slack)) == 1 and thread(slack, alert["ts"]) == []  # no re-alert
        status, _ = await second.post_action(press(slack, alert, "Stop now", ADMIN))
        assert status == 200
        await second.drain()
        assert console.calls.count("StopProjectVersion") == 1
        console.status = "STOPPED"
        await run_for(second, clock, 5)  # the stop is confirmed at STOPPED, then reported
        shown = slack.find_message(OPS, alert["ts"])
        assert f"stopped by <@{ADMIN}> at 09:50 UTC after 50 min idle" in shown["text"]
        assert buttons(shown) == []
        assert slack.responses == []  # nothing to tell the admin: the alert says it all
        [note] = thread(slack, alert["ts"])
        assert note["text"].startswith(f"Stopped cxr.2026-01-01 at the request of <@{ADMIN}>")
    finally:
        await second.stop()


async def test_schedule_starts_and_stops_with_announcements(slack, tmp_path, console, cloudwatch):
    clock = FakeClock(datetime(2026, 1, 5, 7, 30, tzinfo=UTC))  # Monday 07:30 UTC
    console.clock = clock
    bot = await started(
        slack,
        tmp_path,
        console,
        clock,
        cxr_schedule="Mon-Fri 08:00-09:00",
        cxr_idle_alert_minutes=20,
    )
    try:
        await run_for(bot, clock, 10)  # 07:40: not yet
        assert "StartProjectVersion" not in console.calls
        await run_for(bot, clock, 5)  # 07:45: 15 minutes ahead
        assert console.calls.count("StartProjectVersion") == 1
        [announcement] = slack.bot_messages(OPS)
        assert announcement["text"].startswith("Starting cxr.2026-01-01 for its scheduled window")
        console.status = "RUNNING"
        await run_for(bot, clock, 75)  # idle through the window: no alert; stopped at 09:00
        assert alerts(slack) == []
        assert console.calls.count("StopProjectVersion") == 1
        console.status = "STOPPED"
        await run_for(bot, clock, 5)  # the stop is confirmed at STOPPED, then reported
        stop = slack.bot_messages(OPS)[-1]
        assert "its scheduled running window is over" in stop["text"]
        assert "until the next scheduled start, Tue 6 Jan 07:45 UTC" not in stop["text"]
        assert "Tue 6 Jan 08:00 UTC" in stop["text"]
    finally:
        await bot.stop()


async def test_daily_spend_summary(slack, tmp_path, console, clock, cloudwatch):
    console.status = "RUNNING"
    in_service(cloudwatch, T0, T0 + timedelta(hours=3))
    for i in range(12):
        put_metric(cloudwatch, "SuccessfulRequestCount", T0 + timedelta(minutes=15 * i), 1)
    bot = await started(slack, tmp_path, console, clock, cxr_spend_summary_time="09:00")
    try:
        await run_for(bot, clock, 180)
        console.status = "STOPPED"
        await run_for(bot, clock, 21 * 60)  # to Tuesday 09:00
        summaries = [m for m in slack.bot_messages(OPS) if "Rekognition spend" in m["text"]]
        assert len(summaries) == 1  # Monday's (the bot didn't see Sunday: no summary for it)
        monday = summaries[0]["text"]
        assert monday.startswith("Rekognition spend for Mon 5 Jan 2026 (UTC): $12.33.")
        assert "3.1 h on 1 unit, $12.33; 12 requests" in monday
    finally:
        await bot.stop()


async def test_the_spend_summary_counts_the_images_the_bot_classified(
    slack, tmp_path, console, clock, cloudwatch
):
    console.status = "RUNNING"
    bot = await started(slack, tmp_path, console, clock)
    try:
        images = [(f"xray{i}.jpeg", jpeg_bytes(chest_xray(seed=i))) for i in range(2)]
        await bot.share(CLINIC, images)
        await bot.drain()
        await run_for(bot, clock, 60)
        summary = await bot.services.cost_guard.spend_summary(T0.date())
        [row] = summary.rows
        assert row.version_name == VERSION and row.images == 2
        assert row.cost_per_image == pytest.approx(2.0)  # one hour at $4.00, two images
    finally:
        await bot.stop()


async def test_cxr_status_shows_the_running_meter(slack, tmp_path, console, clock, cloudwatch):
    console.status = "RUNNING"
    in_service(cloudwatch, T0 - timedelta(minutes=20), T0 + timedelta(hours=2))
    bot = await started(
        slack, tmp_path, console, clock, cxr_auto_stop_minutes=90, cxr_sole_client=True
    )
    try:
        await run_for(bot, clock, 40)  # 09:40: idle for an hour since 08:40
        status, _ = await bot.post_command(slack.slash_command("status", channel="C0LAB0001"))
        assert status == 200
        await bot.drain()
        await bot.services.lifecycle.settle()
    finally:
        await bot.stop()
    [answer] = [r["text"] for r in slack.responses if "Serving:" in r["text"]]
    assert (
        "Cost guard: cxr.2026-01-01: running 1 unit ($4.00/h) since Mon 5 Jan 08:40 UTC, "
        "$4.00 so far; idle 1 h 00 min ($4.00), auto-stop at 10:10 UTC"
    ) in answer
