"""The cost guard's facade and its reports: `CostGuard` (what the poller and the buttons call),
the `/cxr status` meter, the daily spend summary and the idle alert's buttons.

The guard reviews each poll's versions under one lock, so a button press never acts on a
half-judged poll. The meter and the summary read SQLite only (the runs and the guard's
memory), so they show the same figures the alerts do; runs end at STOPPED
(`decisions.billed`). A summary is recorded only once posted (a Slack outage delays it, a
restart does not repeat it), and none is written for a day before the bot first watched the
fleet. A press is checked against the episode as it is now; who may press is
`commands.admin`'s business.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo

from bot.core.fleet.arns import project_name
from bot.core.fleet.context import aws_error
from bot.core.fleet.decisions import summary_day
from bot.core.fleet.guard_context import (
    EpisodeAlerts,
    FleetActions,
    GuardConfig,
    GuardContext,
    log,
)
from bot.core.fleet.guard_notices import (
    KEEP_HOURS,
    STOP,
    STOPPED,
    STOPPED_ELSEWHERE,
    SpendRow,
    SpendSummary,
    local_time,
    plural,
)
from bot.core.fleet.idle import IdleRules, Observer
from bot.core.fleet.notices import Who, plain
from bot.core.fleet.state import Episode, GuardMemory, Store
from bot.core.fleet.stops import ScheduledActions, StopOrder, Stopper
from bot.core.leadership import FencedOutbox, Leadership
from bot.core.model_versions import RUNNING, STOPPING, ModelCatalog, ModelVersion
from bot.core.ports import Outbox
from bot.core.pricing import Prices, duration, usd
from bot.core.schedule import wall_time
from bot.core.usage import UsageSource


@dataclass(frozen=True)
class MeterLine:
    """One running version as `/cxr status` can show it."""

    version_name: str
    units: int
    hourly: float
    running_since: datetime
    run_cost: float
    last_request: datetime | None
    idle_seconds: float
    idle_cost: float
    snoozed_until: datetime | None
    alerted: bool
    auto_stop_at: datetime | None

    def describe(self, zone: str = "UTC") -> str:
        text = (
            f"{self.version_name}: running {plural(self.units, 'unit')} "
            f"({usd(self.hourly)}/h) since {local_time(self.running_since, zone, day=True)}, "
            f"{usd(self.run_cost)} so far; "
        )
        if self.idle_seconds >= 60:
            text += f"idle {duration(self.idle_seconds)} ({usd(self.idle_cost)})"
        else:
            text += "in use"
        if self.snoozed_until:
            text += f", kept running until {local_time(self.snoozed_until, zone)}"
        elif self.auto_stop_at:
            text += f", auto-stop at {local_time(self.auto_stop_at, zone)}"
        return text


class Meter:
    def __init__(self, context: GuardContext) -> None:
        self.context = context

    async def lines(self, now: datetime) -> list[MeterLine]:
        """One line per open run, as of `now`."""
        context = self.context
        store, prices = context.store, context.prices
        lines = []
        for run in await context.runs.open_runs():
            watch = await store.watch(run.version_arn)
            hourly = prices.hourly(run.units)
            idle_since = (watch.idle_since if watch else None) or run.started_at
            idle_seconds = max(0.0, (now - idle_since).total_seconds())
            snooze = await store.snooze(run.version_arn)
            snoozed = snooze.until if snooze and now < snooze.until else None
            lines.append(
                MeterLine(
                    version_name=await context.version_name(run.version_arn),
                    units=run.units,
                    hourly=hourly,
                    running_since=run.started_at,
                    run_cost=prices.running_cost(run.units, run.started_at, now),
                    last_request=watch.last_request_at if watch else None,
                    idle_seconds=idle_seconds,
                    idle_cost=hourly * idle_seconds / 3600,
                    snoozed_until=snoozed,
                    alerted=await store.open_episode(run.version_arn) is not None,
                    auto_stop_at=None
                    if snoozed
                    else context.config.auto_stop_at(
                        idle_since, await context.version_name(run.version_arn)
                    ),
                )
            )
        return lines


REKOGNITION = "rekognition"  # the model kind the bot records for Rekognition's answers


class ClassificationCounts(Protocol):
    """How many images the bot classified (`bot.state.uploads.UploadStore`)."""

    async def classified_count(
        self, model_kind: str, since: datetime, until: datetime, model_version: str | None = None
    ) -> int: ...


@dataclass
class _VersionDay:
    """One version's running time and cost inside the summarised day, summed over its runs."""

    seconds: float = 0.0
    cost: float = 0.0
    units: int = 0  # the most units it ran on


class SpendSummaries:
    def __init__(self, context: GuardContext, classifications: ClassificationCounts | None) -> None:
        self.context = context
        self.classifications = classifications
        self.first_started: datetime | None = None  # no summary for a day before this

    async def post_when_due(self, now: datetime) -> None:
        """Post yesterday's summary once the local summary time has passed (once per day)."""
        context = self.context
        if self.first_started is None:
            self.first_started = await context.store.note_started(now)
        day = summary_day(
            now,
            at=context.config.summary_time,
            zone=context.config.zone,
            first_started=self.first_started,
        )
        if day is None or await context.store.summary_sent(day):
            return
        try:
            summary = await self.summarise(day, now)
            if not summary.rows and not summary.running_now:
                # Nothing ran and nothing runs: no message (a first start, a quiet weekend).
                await context.store.record_summary(day, now, None, None)
                return
            posted = await context.post(summary)
        except Exception:
            log.exception("cost_guard.summary_failed")
            return
        if posted is None and context.config.channel:
            return  # try again next tick
        await context.store.record_summary(
            day, now, posted.channel if posted else None, posted.ts if posted else None
        )

    async def summarise(self, day: date, now: datetime) -> SpendSummary:
        """What each version cost on one local day (up to `now` if the day isn't over)."""
        context = self.context
        zone = ZoneInfo(context.config.zone)
        start = wall_time(day, time(0, 0), zone)
        end = min(wall_time(day + timedelta(days=1), time(0, 0), zone), now)
        per_version: dict[str, _VersionDay] = {}
        for run in await context.runs.overlapping(start, end):
            begin, finish = max(run.started_at, start), min(run.stopped_at or now, end)
            if finish <= begin:
                continue
            entry = per_version.setdefault(run.version_arn, _VersionDay())
            entry.seconds += (finish - begin).total_seconds()
            entry.cost += context.prices.running_cost(run.units, begin, finish)
            entry.units = max(entry.units, run.units)
        rows = []
        for arn, entry in per_version.items():
            name = await context.version_name(arn)
            usage = await context.usage.usage(project_name(arn), name, start, end)
            idle_seconds, idle_cost = await self._idle_in(arn, start, end, now)
            rows.append(
                SpendRow(
                    version_name=name,
                    running_seconds=entry.seconds,
                    units=entry.units,
                    cost=entry.cost,
                    requests=usage.requests if usage.ok else None,
                    images=await self._images(name, start, end),
                    idle_seconds=idle_seconds,
                    idle_cost=idle_cost,
                )
            )
        rows.sort(key=lambda row: -row.cost)
        running = [
            await context.version_name(run.version_arn) for run in await context.runs.open_runs()
        ]
        return SpendSummary(
            day=day, rows=rows, running_now=sorted(running), zone=context.config.zone
        )

    async def _images(self, version_name: str, start: datetime, end: datetime) -> int:
        """Images the bot classified with this Rekognition version in [start, end)."""
        if self.classifications is None:
            return 0
        return await self.classifications.classified_count(
            REKOGNITION, start, end, model_version=version_name
        )

    async def _idle_in(
        self, arn: str, start: datetime, end: datetime, now: datetime
    ) -> tuple[float, float]:
        """Seconds and cost of the version's idle episodes inside [start, end)."""
        seconds = cost = 0.0
        for episode in await self.context.store.episodes():
            if episode.version_arn != arn:
                continue
            finish = episode.outcome_at or now
            begin, stop = max(episode.idle_since, start), min(finish, end)
            if stop > begin:
                spent = (stop - begin).total_seconds()
                seconds += spent
                cost += self.context.prices.hourly(episode.units) * spent / 3600
        return seconds, cost


@dataclass(frozen=True)
class PressResult:
    ok: bool
    message: str = ""  # for the presser only (ephemeral); empty when the alert says it all
    by: str | None = None  # who handled the alert already, for "{by}" in the message

    def describe(self, who: Who = plain) -> str:
        return self.message.replace("{by}", f" by {who(self.by)}" if self.by else "")


class ButtonPresses:
    def __init__(
        self, context: GuardContext, alerts: EpisodeAlerts, observer: Observer, stopper: Stopper
    ) -> None:
        self.context = context
        self.alerts = alerts
        self.observer = observer
        self.stopper = stopper

    async def press(self, episode_id: int, action: str, user: str, now: datetime) -> PressResult:
        """An admin pressed `action` on the alert of episode `episode_id`."""
        store = self.context.store
        episode = await store.episode(episode_id)
        if episode is None:
            return PressResult(False, "I don't know that alert any more.")
        if not episode.open:
            by = episode.outcome_by if _is_user(episode.outcome_by) else None
            handled = f"Already handled: {episode.version_name} {episode.outcome}{{by}}."
            return PressResult(False, handled, by)
        if action == STOP:
            return await self._stop(episode, user, now)
        if action in KEEP_HOURS:
            until = now + timedelta(hours=KEEP_HOURS[action])
            await store.set_snooze(episode.version_arn, until, user, now, episode.id)
            await store.set_note(episode.id, None)
            await self.context.audit.record(
                now, user, "snooze", episode.version_name, f"ok: until {until.isoformat()}"
            )
            await self.alerts.refresh(episode, now)
            return PressResult(True)
        return PressResult(False, f"Unknown action {action!r}.")

    async def record_refusal(
        self, episode_id: int, action: str, user: str, now: datetime, reason: str
    ) -> None:
        """Someone who may not press pressed: audited, nothing else changes."""
        episode = await self.context.store.episode(episode_id)
        target = episode.version_name if episode else f"episode {episode_id}"
        await self.context.audit.record(
            now, user, f"refused:{action}", target, f"refused: {reason}"
        )

    async def _stop(self, episode: Episode, user: str, now: datetime) -> PressResult:
        try:
            versions = await self.context.catalog.versions()
        except Exception as exc:
            return PressResult(
                False, f"I couldn't reach Rekognition ({aws_error(exc)}); try again."
            )
        version = next((v for v in versions if v.arn == episode.version_arn), None)
        if version is not None and version.status == STOPPING:
            return PressResult(False, f"{episode.version_name} is already stopping.")
        if version is None or version.status != RUNNING:
            if version is not None:
                await self.observer.stopped(version, now)  # closes the run and the episode
            await self.alerts.close(episode, STOPPED_ELSEWHERE, None, now, idle_end=now)
            status = version.status.lower() if version else "gone"
            return PressResult(False, f"{episode.version_name} is already {status}.")
        watch = await self.context.store.watch(episode.version_arn)
        order = StopOrder(version.arn, version.name, STOPPED, user, episode=episode, watch=watch)
        ok, error = await self.stopper.stop(order, now)
        if not ok:
            return PressResult(False, f"The stop failed: {error}. The alert stays open.")
        return PressResult(True)


def _is_user(actor: str | None) -> bool:
    return bool(actor) and actor[:1] in ("U", "W") and actor.isalnum()  # type: ignore[index]


if TYPE_CHECKING:
    from bot.core.clock import Clock
    from bot.core.routing import ModelRouter


class CostGuard:
    def __init__(
        self,
        *,
        catalog: ModelCatalog,
        usage: UsageSource,
        own: UsageSource,
        store: Store,
        prices: Prices,
        outbox: Outbox,
        clock: Clock,
        config: GuardConfig,
        router: ModelRouter | None = None,
        serving_version: Callable[[], str | None] | None = None,
        classifications: ClassificationCounts | None = None,
        stops: FleetActions | None = None,
    ) -> None:
        context = GuardContext(
            catalog=catalog,
            usage=usage,
            own=own,
            store=store.guard,
            runs=store.runs,
            audit=store.audit,
            prices=prices,
            outbox=outbox,
            clock=clock,
            config=config,
            router=router,
            serving_version=serving_version or (lambda: None),
            stops=stops,
        )
        alerts = EpisodeAlerts(context)
        stopper = Stopper(context, alerts)
        self.context = context
        self.observer = Observer(context, alerts)
        self.schedule = ScheduledActions(context, stopper)
        self.idle = IdleRules(context, alerts, stopper, self.observer, self.schedule)
        # A press reaches whichever replica Slack's request lands on, leader or not: it acts
        # for the admin who pressed, so it keeps an unfenced context of its own.
        self.press_context = replace(context)
        press_alerts = EpisodeAlerts(self.press_context)
        self.presses = ButtonPresses(
            self.press_context,
            press_alerts,
            Observer(self.press_context, press_alerts),
            Stopper(self.press_context, press_alerts),
        )
        self.summaries = SpendSummaries(context, classifications)
        self.status_meter = Meter(context)
        self.stopper = stopper  # told by the poller when one of its stops is confirmed
        self.lock = asyncio.Lock()
        self.ticks = 0  # completed polls (tests and /healthz can watch it move)
        self.last_tick_at: datetime | None = None

    # --- the shared dependencies, as callers (and tests) read and swap them ------------------
    @property
    def config(self) -> GuardConfig:
        return self.context.config

    @property
    def store(self) -> GuardMemory:
        return self.context.store

    @property
    def clock(self) -> Clock:
        return self.context.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self.context.clock = self.press_context.clock = clock

    def lead_with(self, leadership: Leadership) -> None:
        """Replicas on one database: the poller's alerts and stops are recorded under the
        leader's term first (`act_once`), and its posts check the term (`FencedOutbox`), so a
        leader paused past its term wakes up unable to alert, post or stop."""
        self.context.outbox = FencedOutbox(self.context.outbox, leadership)
        self.context.act_once = leadership.act_once

    # --- the poll ------------------------------------------------------------------------
    async def review(self, versions: list[ModelVersion] | None, now: datetime) -> None:
        """Observe every version, apply the schedule, judge idleness, summarise (the caller
        holds `lock`)."""
        now = now.astimezone(UTC)
        if versions is not None:
            await self.observer.observe(versions, now)
            await self.schedule.apply(versions, now)
            for version in versions:
                if version.status == RUNNING:
                    await self.idle.judge(version, now)
        await self.summaries.post_when_due(now)
        self.ticks += 1
        self.last_tick_at = now

    # --- buttons -----------------------------------------------------------------------------
    async def settle(self) -> None:
        """Wait for a poll or press in progress to finish (tests driving a fake clock)."""
        async with self.lock:
            pass

    async def press(self, episode_id: int, action: str, user: str) -> PressResult:
        """An admin pressed Stop now / Keep 1 h / Keep 4 h on an idle alert."""
        async with self.lock:
            return await self.presses.press(episode_id, action, user, self.context.now())

    async def record_refusal(
        self, episode_id: int, action: str, user: str, reason: str = "not an admin"
    ) -> None:
        """A non-admin pressed a button: audited, nothing else changes."""
        await self.presses.record_refusal(episode_id, action, user, self.context.now(), reason)

    # --- reports -----------------------------------------------------------------------------
    async def spend_summary(self, day: date, now: datetime | None = None) -> SpendSummary:
        """What each version cost on one local day (up to `now` if the day isn't over)."""
        return await self.summaries.summarise(day, now or self.context.now())

    async def meter(self, now: datetime | None = None) -> list[MeterLine]:
        """Every version the guard sees running, from SQLite (no AWS calls)."""
        return await self.status_meter.lines(now or self.context.now())
