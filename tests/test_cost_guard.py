"""The cost guard as a domain object: a fake clock drives hours of model life in milliseconds.

The catalog, the metrics and the chat are in-memory fakes here; `test_cost_guard_wire.py`
runs the same rules over the wire (LocalSlack, botocore, moto's CloudWatch).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bot.core.clock import FakeClock
from bot.core.fleet import notices as cn
from bot.core.fleet.guard import CostGuard, GuardConfig
from bot.core.fleet.lifecycle import Lifecycle, LifecycleConfig, RouterServing
from bot.core.model_versions import (
    RUNNING,
    STARTING,
    STOPPED,
    STOPPING,
    TRAINING_COMPLETED,
    ModelVersion,
)
from bot.core.ports import PostedMessage
from bot.core.pricing import Prices
from bot.core.schedule import Schedule
from bot.core.usage import OwnTraffic, Usage
from bot.slack.fleet import meter_line, said
from bot.state.db import Database
from bot.state.store import SqliteStore
from tests.harness import open_database

PROJECT = "arn:aws:rekognition:us-east-1:123456789012:project/cxr/1700000000000"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday
OPS = "C0OPS0001"
ADMIN = "U0ADMIN01"


def version_arn(name: str) -> str:
    return f"{PROJECT.rsplit('/', 1)[0]}/version/{name}/1700000000001"


# --- fakes -----------------------------------------------------------------------------------
class FakeCatalog:
    """A Rekognition project: versions that start in 5 minutes and stop in 1."""

    STARTS_IN = timedelta(minutes=5)
    STOPS_IN = timedelta(minutes=1)

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.status: dict[str, str] = {}
        self.changed: dict[str, datetime] = {}
        self.units: dict[str, int] = {}
        self.calls: list[tuple[str, str]] = []
        self.stop_errors: list[Exception] = []

    def add(self, name: str, status: str = TRAINING_COMPLETED, units: int = 1) -> str:
        arn = version_arn(name)
        self.status[arn], self.units[arn] = status, units
        self.changed[arn] = self.clock.now()
        return arn

    def set(self, arn: str, status: str) -> None:
        """Someone else (the console, the CLI) changed the version."""
        self.status[arn] = status
        self.changed[arn] = self.clock.now()

    def _settle(self) -> None:
        now = self.clock.now()
        for arn, status in self.status.items():
            if status == STARTING and now - self.changed[arn] >= self.STARTS_IN:
                self.set(arn, RUNNING)
            elif status == STOPPING and now - self.changed[arn] >= self.STOPS_IN:
                self.set(arn, STOPPED)

    async def versions(self) -> list[ModelVersion]:
        self._settle()
        return [
            ModelVersion(arn=arn, name=arn.split("/")[3], status=s, min_units=self.units[arn])
            for arn, s in self.status.items()
        ]

    async def start(self, version_arn: str, min_units: int, max_units: int | None) -> str:
        self.calls.append(("start", version_arn))
        self.units[version_arn] = min_units
        self.set(version_arn, STARTING)
        return STARTING

    async def stop(self, version_arn: str) -> str:
        self.calls.append(("stop", version_arn))
        if self.stop_errors:
            raise self.stop_errors.pop(0)
        self.set(version_arn, STOPPING)
        return STOPPING


class FakeMetrics:
    """CloudWatch as the guard sees it: request times and in-service stretches per version."""

    def __init__(self) -> None:
        self.requests: dict[str, list[datetime]] = defaultdict(list)
        self.running_since: dict[str, datetime] = {}
        self.units: dict[str, float] = {}  # InServiceInferenceUnits, when it reports them
        self.broken = False
        self.reads: list[tuple[str, datetime, datetime]] = []

    async def usage(self, project: str, version: str, start: datetime, end: datetime) -> Usage:
        self.reads.append((version, start, end))
        if self.broken:
            return Usage.unknown()
        hits = [t for t in self.requests[version] if start <= t < end]
        since = self.running_since.get(version)
        return Usage(
            last_request=max(hits) + timedelta(minutes=1) if hits else None,
            requests=len(hits),
            units=self.units.get(version) if since else None,
            running_since=max(since, start) if since else None,
        )


class FakeClassifications:
    def __init__(self) -> None:
        self.last: dict[str, datetime] = {}

    async def last_classified_at(self, model_kind: str, model_version: str | None = None):
        return self.last.get(model_version or "")


@dataclass
class Post:
    channel: str
    notice: Any
    thread_ts: str | None
    ts: str


class RecordingOutbox:
    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.updates: list[tuple[str, Any]] = []
        self.down = False

    async def post(self, channel, notice, *, thread_ts=None) -> PostedMessage:
        if self.down:
            raise ConnectionError("slack is down")
        post = Post(channel, notice, thread_ts, f"{1_767_600_000 + len(self.posts)}.000100")
        self.posts.append(post)
        return PostedMessage(channel, post.ts)

    async def update(self, message, notice) -> None:
        self.updates.append((message.ts, notice))

    async def react(self, *args, **kwargs) -> None: ...

    async def attach_images(self, *args, **kwargs) -> None: ...

    def roots(self, kind=None) -> list[Post]:
        return [
            p
            for p in self.posts
            if p.thread_ts is None and (kind is None or isinstance(p.notice, kind))
        ]

    def thread(self, ts: str) -> list[Post]:
        return [p for p in self.posts if p.thread_ts == ts]

    def current(self, ts: str) -> Any:
        """What the message with `ts` shows now (its last update, or what was posted)."""
        updated = [n for t, n in self.updates if t == ts]
        if updated:
            return updated[-1]
        return next(p.notice for p in self.posts if p.ts == ts)


class FakeRouter:
    """What `RouterServing` reads and tells (the guard's tests don't classify)."""

    model = fallback = None

    def __init__(self, primary_arn: str | None) -> None:
        self.primary = type("Primary", (), {"version_arn": primary_arn})()
        self.told: list[bool] = []

    def set_primary_running(self, running: bool) -> None:
        self.told.append(running)


class World:
    """One guard and everything around it; `restart()` builds a new guard on the same DB."""

    def __init__(self, path: Path, **config: Any) -> None:
        self.path = path
        self.clock = FakeClock(T0)
        self.catalog = FakeCatalog(self.clock)
        self.metrics = FakeMetrics()
        self.classifications = FakeClassifications()
        self.outbox = RecordingOutbox()
        self.config_values = {"channel": OPS, "summary_time": None, **config}
        self.serving: str | None = None
        self.router = FakeRouter(None)
        self.db: Database | None = None
        self.guard = self._build()

    def _build(self) -> CostGuard:
        self.db = open_database(self.path)
        state = SqliteStore(self.db)
        self.runs, self.audit, self.store = state.runs, state.audit, state.guard
        self.lifecycle = Lifecycle(
            config=LifecycleConfig(project_arn=PROJECT, region="us-east-1", ops_channel=OPS),
            catalog=self.catalog,
            training=None,
            images=None,
            store=state,
            prices=Prices(4.0),
            outbox=self.outbox,
            clock=self.clock,
            serving=RouterServing(self.router, lambda arn: None),
        )
        guard = CostGuard(
            catalog=self.catalog,
            usage=self.metrics,
            own=OwnTraffic(self.classifications),
            store=state,
            prices=Prices(4.0),
            outbox=self.outbox,
            clock=self.clock,
            config=GuardConfig(**self.config_values),
            serving_version=lambda: self.serving,
            lifecycle=self.lifecycle,
        )
        self.poller = self.lifecycle.join_guard(guard, owner="test-instance")
        return guard

    async def tick(self) -> None:
        """One poll of the fleet: operations in flight, then the guard (as the bot polls)."""
        await self.poller.tick()

    async def restart(self) -> None:
        assert self.db is not None
        await asyncio.to_thread(self.db.close)
        self.guard = self._build()

    async def run_for(self, minutes: float) -> None:
        """Let `minutes` pass, one poll per interval (as `CostGuard.run` would)."""
        step = self.guard.config.interval
        for _ in range(round(minutes * 60 / step.total_seconds())):
            await self.clock.advance(step.total_seconds())
            await self.tick()

    def alerts(self) -> list[Post]:
        return self.outbox.roots(cn.IdleAlert)

    async def audit_actions(self) -> list[tuple[str, str, str]]:
        return [
            (e.actor, e.action, e.result.split(":")[0])
            for e in reversed(await self.audit.recent(50))
        ]


@pytest.fixture
def world(tmp_path) -> World:
    return World(tmp_path / "cxr.db")


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


# --- idle alerts -----------------------------------------------------------------------------
async def test_a_model_started_in_the_console_and_left_idle_gets_one_alert_thread(world):
    arn = world.catalog.add("cxr.v1", RUNNING)
    world.metrics.running_since["cxr.v1"] = T0 - minutes(10)  # started before the bot looked
    await world.tick()
    run = await world.runs.current(arn)
    assert run.started_at == T0 - minutes(10) and run.source == "observed"
    assert ("watcher", "observed:running", "ok") in await world.audit_actions()

    await world.run_for(15)  # 25 min idle: nothing yet
    assert world.alerts() == []
    await world.run_for(5)  # 30 min idle: the alert
    [alert] = world.alerts()
    notice = alert.notice
    assert alert.channel == OPS
    assert notice.version_name == "cxr.v1" and notice.units == 1 and notice.hourly == 4.0
    assert notice.idle_seconds == 30 * 60 and notice.idle_cost == pytest.approx(2.0)
    assert notice.actions == (cn.STOP, cn.KEEP_1H, cn.KEEP_4H)
    assert "has served no request for 30 min" in said(notice) and "$2.00 spent idle" in said(notice)

    # Reminders back off in the same thread: at 60, 120, 240, 480 min idle, then every 4 h.
    reminders_at = []
    for _ in range(12 * 13):  # 13 hours
        before = len(world.outbox.thread(alert.ts))
        await world.run_for(5)
        if len(world.outbox.thread(alert.ts)) > before:
            idle = world.clock.now() - (T0 - minutes(10))
            reminders_at.append(int(idle.total_seconds() // 60))
    assert reminders_at == [60, 120, 240, 480, 720]
    assert len(world.alerts()) == 1  # one thread, not a message per poll
    reminder = world.outbox.thread(alert.ts)[0].notice
    assert isinstance(reminder, cn.IdleFollowUp) and "still running idle: 1 h 00 min" in said(
        reminder
    )
    # the alert itself is refreshed in place with the idle time so far
    assert world.outbox.current(alert.ts).idle_seconds == 720 * 60


async def test_traffic_from_another_client_keeps_the_model_alive(world):
    world.catalog.add("cxr.v1", RUNNING)
    await world.tick()
    for _ in range(8):  # a request every 20 minutes for 2 h 40 min, from a script
        world.metrics.requests["cxr.v1"].append(world.clock.now() + minutes(1))
        await world.run_for(20)
    assert world.alerts() == []
    last = max(world.metrics.requests["cxr.v1"]) + minutes(1)
    await world.run_for(30)
    [alert] = world.alerts()
    assert alert.notice.idle_since == last


async def test_the_bots_own_classifications_count_as_use(world):
    world.catalog.add("cxr.v1", RUNNING)
    world.metrics.broken = True  # no CloudWatch at all: the bot's own record still counts
    await world.tick()
    for _ in range(4):
        world.classifications.last["cxr.v1"] = world.clock.now()
        await world.run_for(25)
    assert world.alerts() == []


async def test_traffic_ends_an_episode_and_a_new_idle_stretch_opens_a_new_thread(world):
    world.catalog.add("cxr.v1", RUNNING)
    await world.tick()
    await world.run_for(40)
    [first] = world.alerts()
    world.metrics.requests["cxr.v1"].append(world.clock.now())
    await world.run_for(5)
    resumed = world.outbox.current(first.ts)
    assert resumed.state == cn.RESUMED and resumed.actions == ()
    assert "back in use" in said(resumed)
    await world.run_for(30)
    assert len(world.alerts()) == 2
    assert world.alerts()[1].ts != first.ts


async def test_the_alert_waits_for_slack_and_is_posted_once(world):
    world.catalog.add("cxr.v1", RUNNING)
    await world.tick()
    world.outbox.down = True
    await world.run_for(35)
    assert world.outbox.posts == []
    world.outbox.down = False
    await world.run_for(5)
    assert len(world.alerts()) == 1
    [episode] = [e for e in await world.store.episodes() if e.open]
    assert episode.ts == world.alerts()[0].ts


# --- buttons ---------------------------------------------------------------------------------
async def test_snooze_then_alert_again_in_the_same_thread(world):
    arn = world.catalog.add("cxr.v1", RUNNING)
    await world.tick()
    await world.run_for(30)
    [alert] = world.alerts()
    result = await world.guard.press(alert.notice.episode_id, cn.KEEP_1H, ADMIN)
    assert result.ok
    snoozed = world.outbox.current(alert.ts)
    assert snoozed.state == cn.SNOOZED and snoozed.actions == (cn.STOP,)
    assert f"Kept running by {ADMIN} at 09:30 UTC until 10:30 UTC" in said(snoozed)
    assert (ADMIN, "snooze", "ok") in await world.audit_actions()

    await world.run_for(55)  # quiet during the snooze (a reminder was due at 60 min idle)
    assert world.outbox.thread(alert.ts) == []
    await world.run_for(5)  # the snooze is over: a reminder in the same thread
    [reminder] = world.outbox.thread(alert.ts)
    assert reminder.notice.snooze_ended_by == ADMIN
    assert f"The snooze by {ADMIN} is over" in said(reminder.notice)
    assert world.outbox.current(alert.ts).actions == (cn.STOP, cn.KEEP_1H, cn.KEEP_4H)
    # the back-off starts again from N: next reminder 30 min later, then 60
    await world.run_for(30)
    assert len(world.outbox.thread(alert.ts)) == 2
    await world.run_for(55)
    assert len(world.outbox.thread(alert.ts)) == 2
    await world.run_for(5)
    assert len(world.outbox.thread(alert.ts)) == 3
    assert len(world.alerts()) == 1 and await world.runs.current(arn) is not None


async def test_a_snooze_also_holds_auto_stop(tmp_path):
    world = World(tmp_path / "cxr.db", auto_stop_after=minutes(60), sole_client=True)
    world.catalog.add("cxr.v1", RUNNING)
    await world.tick()
    await world.run_for(30)
    [alert] = world.alerts()
    await world.guard.press(alert.notice.episode_id, cn.KEEP_4H, ADMIN)
    await world.run_for(235)
    assert ("stop", version_arn("cxr.v1")) not in world.catalog.calls
    await world.run_for(5)
    assert ("stop", version_arn("cxr.v1")) in world.catalog.calls


async def test_stop_now_stops_records_and_reports(world):
    arn = world.catalog.add("cxr.v1", RUNNING)
    world.router.primary.version_arn = arn
    await world.tick()
    await world.run_for(45)
    [alert] = world.alerts()
    result = await world.guard.press(alert.notice.episode_id, cn.STOP, ADMIN)
    assert result.ok
    assert world.catalog.calls == [("stop", arn)]
    assert world.router.told[-1] is False  # the local model answers at once
    # STOPPING is still billed, and the stop is confirmed only at STOPPED (the next poll)
    assert await world.runs.current(arn) is not None
    assert world.outbox.current(alert.ts).state == cn.OPEN and world.outbox.thread(alert.ts) == []
    pressed = await world.guard.press(alert.notice.episode_id, cn.STOP, "U0ADMIN02")
    assert not pressed.ok and "already stopping" in said(pressed)
    await world.run_for(5)
    assert await world.runs.current(arn) is None  # the meter stops at STOPPED
    stopped = world.outbox.current(alert.ts)
    assert stopped.state == cn.STOPPED and stopped.actions == ()
    assert f"stopped by {ADMIN} at 09:45 UTC after 45 min idle" in said(stopped)
    [note] = world.outbox.thread(alert.ts)
    assert isinstance(note.notice, cn.GuardStopped)
    assert "/cxr start cxr.v1" in said(note.notice)
    assert (ADMIN, "stop", "ok") in await world.audit_actions()
    # a second press (someone else, a moment later) changes nothing
    again = await world.guard.press(alert.notice.episode_id, cn.STOP, "U0ADMIN02")
    assert not again.ok and f"Already handled: cxr.v1 stopped by {ADMIN}" in said(again)
    assert world.catalog.calls == [("stop", arn)]
    # the version goes STOPPING, then STOPPED: no new run, no new alert
    await world.run_for(120)
    assert await world.runs.current(arn) is None and len(world.alerts()) == 1


async def test_stop_now_on_a_model_already_stopped_in_the_console(world):
    arn = world.catalog.add("cxr.v1", RUNNING)
    await world.tick()
    await world.run_for(30)
    [alert] = world.alerts()
    world.catalog.set(arn, STOPPED)
    result = await world.guard.press(alert.notice.episode_id, cn.STOP, ADMIN)
    assert not result.ok and "already stopped" in said(result)
    assert world.catalog.calls == []
    assert world.outbox.current(alert.ts).state == cn.STOPPED_ELSEWHERE


async def test_a_press_that_does_nothing_says_why(world):
    arn = world.catalog.add("cxr.v1", RUNNING)
    await world.tick()
    await world.run_for(30)
    [alert] = world.alerts()
    episode = alert.notice.episode_id
    unknown = await world.guard.press(episode, "keep_forever", ADMIN)
    assert not unknown.ok and said(unknown) == "Unknown action 'keep_forever'."
    world.catalog.stop_errors = [RuntimeError("throttled")]
    failed = await world.guard.press(episode, cn.STOP, ADMIN)
    assert not failed.ok and said(failed).startswith("The stop failed: ")
    assert said(failed).endswith(". The alert stays open.")
    assert world.outbox.current(alert.ts).state == cn.STOP_FAILED

    async def unreachable() -> list[ModelVersion]:
        raise ConnectionError("no route")

    world.catalog.versions = unreachable  # type: ignore[method-assign]
    result = await world.guard.press(episode, cn.STOP, ADMIN)
    assert not result.ok and said(result).startswith("I couldn't reach Rekognition (")
    assert said(result).endswith("); try again.")
    assert world.catalog.calls == [("stop", arn)]
    gone = await world.guard.press(episode + 1, cn.STOP, ADMIN)
    assert not gone.ok and said(gone) == "I don't know that alert any more."


async def test_a_restart_between_alert_and_press_forgets_nothing(world):
    arn = world.catalog.add("cxr.v1", RUNNING)
    await world.tick()
    await world.run_for(30)
    [alert] = world.alerts()
    await world.restart()
    await world.run_for(5)
    await world.tick()  # twice at the same moment: still nothing new
    assert len(world.outbox.posts) == 1
    result = await world.guard.press(alert.notice.episode_id, cn.STOP, ADMIN)
    assert result.ok and world.catalog.calls == [("stop", arn)]
    await world.run_for(5)  # confirmed at STOPPED
    assert world.outbox.current(alert.ts).state == cn.STOPPED


async def test_a_restart_keeps_the_reminder_schedule(world):
    world.catalog.add("cxr.v1", RUNNING)
    await world.tick()
    await world.run_for(60)
    [alert] = world.alerts()
    assert len(world.outbox.thread(alert.ts)) == 1  # the 60-minute reminder
    await world.restart()
    await world.run_for(55)
    assert len(world.outbox.thread(alert.ts)) == 1
    await world.run_for(5)
    assert len(world.outbox.thread(alert.ts)) == 2  # at 120 minutes, as before the restart


# --- auto-stop -------------------------------------------------------------------------------
async def test_auto_stop_after_the_idle_limit(tmp_path):
    world = World(tmp_path / "cxr.db", auto_stop_after=minutes(90), sole_client=True)
    arn = world.catalog.add("cxr.v1", RUNNING, units=2)
    world.router.primary.version_arn = arn
    world.metrics.running_since["cxr.v1"] = T0
    await world.tick()
    await world.run_for(30)
    [alert] = world.alerts()
    assert alert.notice.auto_stop_at == T0 + minutes(90)
    assert "Auto-stop at 10:30 UTC" in said(alert.notice)
    await world.run_for(55)
    assert world.catalog.calls == []
    await world.run_for(5)
    assert world.catalog.calls == [("stop", arn)]
    assert world.router.told[-1] is False
    await world.run_for(5)  # confirmed at STOPPED, billed until then
    assert await world.runs.current(arn) is None
    [stopped] = [p for p in world.outbox.thread(alert.ts) if isinstance(p.notice, cn.GuardStopped)]
    text = said(stopped.notice)
    assert "Stopped cxr.v1 automatically after 1 h 30 min without a request" in text
    assert "It ran 1 h 35 min on 2 units ($12.67)" in text
    assert "This saves $8.00 for every hour it would have stayed up ($192.00 a day)" in text
    assert "Start it again with `/cxr start cxr.v1`" in text
    assert world.outbox.current(alert.ts).state == cn.AUTO_STOPPED
    assert ("cost-guard", "stop", "ok") in await world.audit_actions()
    await world.run_for(60)
    assert world.catalog.calls == [("stop", arn)]  # stopped stays stopped, no more alerts
    assert len(world.alerts()) == 1


async def test_auto_stop_before_the_alert_posts_a_message_of_its_own(tmp_path):
    world = World(tmp_path / "cxr.db", auto_stop_after=minutes(20), sole_client=True)
    arn = world.catalog.add("cxr.v1", RUNNING)
    await world.tick()
    await world.run_for(20)
    assert world.catalog.calls == [("stop", arn)]
    await world.run_for(5)  # confirmed at STOPPED
    assert world.alerts() == []
    [stopped] = world.outbox.roots(cn.GuardStopped)
    assert "after 20 min without a request" in said(stopped.notice)


async def test_auto_stop_acts_only_where_the_bot_sees_all_traffic_and_the_alert_says_so(tmp_path):
    # Neither the only client nor the version's owner: CloudWatch's silence proves nothing.
    world = World(tmp_path / "cxr.db", auto_stop_after=minutes(60))
    arn = world.catalog.add("cxr.v1", RUNNING)
    await world.tick()
    world.metrics.broken = True
    await world.run_for(90)
    assert world.catalog.calls == []  # other clients might be using it: alert only
    [alert] = world.alerts()
    text = said(world.outbox.current(alert.ts))
    assert "I can't read CloudWatch just now (no answer)" in text
    assert "I won't stop it automatically" in text and "Auto-stop at" not in text
    world.metrics.broken = False
    world.config_values["owned_versions"] = frozenset({"cxr.v1"})  # only the bot calls it
    await world.restart()
    await world.run_for(5)
    assert world.catalog.calls == [("stop", arn)]


async def test_a_stop_aws_refuses_is_worded_in_the_reply_and_the_alert_and_audited_by_code(world):
    world.catalog.add("cxr.v1", RUNNING)
    await world.tick()
    await world.run_for(30)
    [alert] = world.alerts()
    denied = {"Code": "AccessDeniedException", "Message": "not allowed"}
    world.catalog.stop_errors = [ClientError({"Error": denied}, "StopProjectVersion")]
    failed = await world.guard.press(alert.notice.episode_id, cn.STOP, ADMIN)
    refused = "AWS refused the bot's credentials (AccessDeniedException: not allowed). Check its"
    assert said(failed) == f"The stop failed: {refused} IAM policy. The alert stays open."
    alert_now = said(world.outbox.current(alert.ts))  # rendered from the episode's stored note
    assert f"Stop failed at 09:30 UTC: {refused} IAM policy." in alert_now
    [entry] = [e for e in await world.audit.recent(5) if e.action == "stop"]
    assert entry.result == "failed: AccessDeniedException"


async def test_a_stop_failure_noted_in_words_before_an_upgrade_keeps_them(world):
    world.catalog.add("cxr.v1", RUNNING)
    await world.tick()
    await world.run_for(30)
    [alert] = world.alerts()
    world.catalog.stop_errors = [RuntimeError("throttled")]
    await world.guard.press(alert.notice.episode_id, cn.STOP, ADMIN)
    old = "AWS refused the bot's credentials (AccessDenied: no). Check its IAM policy."
    await world.store.update_episode(alert.notice.episode_id, note=old)  # as older bots noted it
    await world.restart()
    await world.run_for(60)  # a reminder re-renders the alert
    assert world.outbox.thread(alert.ts)
    assert f"Stop failed at 09:30 UTC: {old}" in said(world.outbox.current(alert.ts))
    assert ".." not in said(world.outbox.current(alert.ts))  # one full stop, not two


async def test_a_failed_auto_stop_is_reported_once_and_retried(tmp_path):
    world = World(tmp_path / "cxr.db", auto_stop_after=minutes(60), sole_client=True)
    arn = world.catalog.add("cxr.v1", RUNNING)
    await world.tick()
    failure = RuntimeError("throttled")
    world.catalog.stop_errors = [failure, failure, failure]
    await world.run_for(75)  # three failed tries
    assert world.catalog.calls == [("stop", arn)] * 4
    [alert] = world.alerts()
    failures = [p for p in world.outbox.thread(alert.ts) if isinstance(p.notice, cn.StopFailed)]
    assert len(failures) == 1 and "I couldn't stop cxr.v1" in said(failures[0].notice)
    await world.run_for(5)  # the 4th try worked: confirmed at STOPPED
    assert world.outbox.current(alert.ts).state == cn.AUTO_STOPPED


async def test_a_model_stopped_elsewhere_closes_the_run_and_the_episode(world):
    arn = world.catalog.add("cxr.v1", RUNNING)
    await world.tick()
    await world.run_for(40)
    [alert] = world.alerts()
    world.catalog.set(arn, STOPPED)
    await world.run_for(5)
    assert await world.runs.current(arn) is None
    assert world.outbox.current(alert.ts).state == cn.STOPPED_ELSEWHERE
    assert ("watcher", "observed:stopped", "STOPPED") in await world.audit_actions()


# --- the schedule ----------------------------------------------------------------------------
async def test_schedule_across_midnight_on_a_dst_night(tmp_path):
    """Saturday 22:00-06:00 in New York over the 8 March 2026 spring-forward: 7 real hours."""
    schedule = Schedule.parse("Sat 22:00-06:00", "America/New_York")
    world = World(
        tmp_path / "cxr.db", schedule=schedule, zone="America/New_York", start_lead=minutes(15)
    )
    world.clock = FakeClock(datetime(2026, 3, 8, 2, 0, tzinfo=UTC))  # Sat 21:00 EST
    world.catalog.clock = world.clock
    await world.restart()  # the poller, the lifecycle and the guard on the new clock
    arn = world.catalog.add("cxr.v1", STOPPED)
    world.serving = arn
    await world.tick()
    await world.run_for(40)  # 21:40 EST: not yet
    assert world.catalog.calls == []
    await world.run_for(5)  # 21:45 EST: start 15 minutes ahead
    assert world.catalog.calls == [("start", arn)]
    [started] = world.outbox.roots(cn.ScheduleNotice)
    assert "Starting cxr.v1 for its scheduled window (22:00 EST–06:00 EDT" in said(started.notice)
    await world.run_for(10)
    assert (await world.runs.current(arn)).source == "schedule"
    # idle all night inside the window: no alert
    await world.run_for(7 * 60)  # to 05:55 EDT (09:55 UTC)
    assert world.alerts() == [] and world.catalog.calls == [("start", arn)]
    await world.run_for(5)  # 06:00 EDT = 10:00 UTC, seven real hours after 22:00 EST
    assert world.clock.now() == datetime(2026, 3, 8, 10, 0, tzinfo=UTC)
    assert world.catalog.calls == [("start", arn), ("stop", arn)]
    await world.run_for(5)  # confirmed at STOPPED
    [stop] = world.outbox.roots(cn.GuardStopped)
    assert stop.notice.reason == cn.SCHEDULE_STOPPED
    assert "its scheduled running window is over" in said(stop.notice)
    assert "until the next scheduled start, Sat 14 Mar 22:00 EDT" in said(stop.notice)
    assert ("schedule", "start", "requested") in await world.audit_actions()
    assert ("schedule", "stop", "ok") in await world.audit_actions()
    # a restart right after changes nothing: the actions are remembered
    await world.restart()
    await world.run_for(30)
    assert world.catalog.calls == [("start", arn), ("stop", arn)]


async def test_schedule_leaves_a_model_started_after_hours_to_the_idle_alerts(tmp_path):
    schedule = Schedule.parse("Mon-Fri 08:00-18:00", "UTC")
    world = World(tmp_path / "cxr.db", schedule=schedule, start_lead=minutes(0))
    arn = world.catalog.add("cxr.v1", RUNNING)
    world.serving = arn
    other = world.catalog.add("cxr.v2", STOPPED)
    await world.run_for(8 * 60 + 30)  # Monday 09:00 to 17:30, in the window
    assert world.alerts() == []
    world.catalog.set(other, RUNNING)  # someone starts v2 at 17:30 for an evening job
    await world.run_for(35)  # 18:05: v1 stopped by the schedule, v2 ran in the window too
    assert ("stop", arn) in world.catalog.calls and ("stop", other) in world.catalog.calls
    world.catalog.set(other, RUNNING)  # started again at 18:05, after the window
    await world.run_for(60)
    assert world.catalog.calls.count(("stop", other)) == 1
    assert [a.notice.version_name for a in world.alerts()] == ["cxr.v2"]


# --- summary and status ----------------------------------------------------------------------
async def test_daily_spend_summary_once_a_day(tmp_path):
    world = World(tmp_path / "cxr.db", summary_time=time(9, 0))
    arn = world.catalog.add("cxr.v1", RUNNING, units=2)
    world.metrics.running_since["cxr.v1"] = T0
    world.metrics.requests["cxr.v1"] = [T0 + minutes(i) for i in range(0, 600, 10)]  # 60
    await world.tick()  # Monday 09:00, the bot's first day: nothing to say about Sunday
    assert world.outbox.roots(cn.SpendSummary) == []
    await world.run_for(10 * 60)  # runs until 19:00 ...
    world.catalog.set(arn, STOPPED)
    await world.run_for(14 * 60)  # ... and Tuesday 09:00 brings Monday's summary
    summaries = world.outbox.roots(cn.SpendSummary)
    assert len(summaries) == 1
    monday = summaries[0].notice
    [row] = monday.rows
    assert row.version_name == "cxr.v1" and row.units == 2
    assert row.hours == pytest.approx(10.0, abs=0.1)
    assert row.cost == pytest.approx(80.0, abs=1)
    assert row.requests == 60
    assert "Rekognition spend for Mon 5 Jan 2026 (UTC)" in said(monday)
    await world.restart()
    await world.run_for(60)
    assert len(world.outbox.roots(cn.SpendSummary)) == 1


async def test_no_summary_for_a_day_when_no_model_ran(tmp_path):
    world = World(tmp_path / "cxr.db", summary_time=time(9, 0))
    world.catalog.add("cxr.v1", STOPPED)
    await world.tick()  # a first start: nothing ran yesterday, nothing runs now
    await world.run_for(24 * 60)
    assert world.outbox.roots(cn.SpendSummary) == []


async def test_meter_for_cxr_status(tmp_path):
    world = World(tmp_path / "cxr.db", auto_stop_after=minutes(120), sole_client=True)
    world.catalog.add("cxr.v1", RUNNING)
    world.metrics.running_since["cxr.v1"] = T0
    await world.tick()
    await world.run_for(45)
    [line] = await world.guard.meter()
    assert line.version_name == "cxr.v1" and line.alerted
    assert line.idle_seconds == 45 * 60 and line.run_cost == pytest.approx(3.0)
    assert line.auto_stop_at == T0 + minutes(120)
    assert meter_line(line, "UTC") == (
        "cxr.v1: running 1 unit ($4.00/h) since Mon 5 Jan 09:00 UTC, $3.00 so far; "
        "idle 45 min ($3.00), auto-stop at 11:00 UTC"
    )


async def test_busy_polls_read_cloudwatch_at_most_twice_per_interval(world):
    # While an operation is open the poller ticks every 30 s; GetMetricData is billed.
    world.catalog.add("cxr.v1", RUNNING)
    await world.tick()
    for _ in range(10):  # five minutes of 30-second polls
        await world.clock.advance(30)
        await world.tick()
    reads = [r for r in world.metrics.reads if r[0] == "cxr.v1"]
    assert 2 <= len(reads) <= 3
    assert await world.runs.current(version_arn("cxr.v1")) is not None


async def test_a_stopped_version_is_recorded_once_not_rewritten_at_every_poll(world):
    arn = world.catalog.add("cxr.v1", RUNNING)
    await world.tick()
    world.catalog.set(arn, STOPPED)
    await world.run_for(5)
    first = await world.store.watch(arn)
    assert first is not None and first.status == STOPPED and first.idle_since is None
    await world.run_for(30)
    assert await world.store.watch(arn) == first  # the same row: nothing to write
    world.catalog.set(arn, RUNNING)  # started again elsewhere: watched again
    await world.run_for(5)
    assert (await world.store.watch(arn)).status == RUNNING


async def test_a_version_seen_running_or_stopped_elsewhere_is_told_to_the_router(world):
    arn = world.catalog.add("cxr.v1", RUNNING)
    world.router.primary.version_arn = arn  # the version the bot classifies with
    await world.tick()
    assert world.router.told == [True]  # started in the console: the router uses it at once
    world.catalog.set(arn, STOPPED)
    await world.run_for(5)
    assert world.router.told[-1] is False  # stopped in the console: the local model answers
