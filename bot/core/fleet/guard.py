"""The cost guard: runs (billing), idle episodes and their alerts, auto-stop, the weekday
schedule, the daily spend summary, the idle alert's buttons and the `/cxr status` meter.

`CostGuard.review` takes each poll's versions (the fleet poller calls it after the operations,
under one lock, so a press never acts on a half-judged poll): `Observer` opens a run when a
version is first seen RUNNING (back-dated to when CloudWatch says its units came into
service) and closes it when it is seen neither RUNNING nor STOPPING; the latest request the
bot can see sets where idle time starts. `IdleRules` apply `decisions.idle_actions`: an idle
stretch is an episode with one alert thread, reminders back off (2N, 4N… up to `max_gap`), a
snooze holds reminders and auto-stop, and auto-stop acts only on versions whose whole traffic
the bot sees (`CXR_SOLE_CLIENT`, `CXR_OWNED_VERSIONS`); inside a scheduled window the serving
version is left alone. Stops and scheduled starts go through the fleet's one stop and one
start path (the lifecycle's operations): a stop is confirmed at STOPPED, only then reported
with what it cost and saved. Schedule actions are claimed under a key naming their window, so
a restart never repeats one. The meter and the summary read the store only, so they show the
figures the alerts do; a summary is recorded once posted, never for a day before the bot first
watched the fleet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from bot.core.fleet.arns import project_name, version_name
from bot.core.fleet.decisions import (
    AUTO_STOP_ALLOWED,
    STARTABLE,
    AutoStop,
    Idle,
    IdleFacts,
    IdleSettings,
    ScheduledStop,
    auto_stop_case,
    billed,
    idle_actions,
    next_reminder_gap,
    schedule_start_due,
    schedule_stop_due,
    summary_day,
)
from bot.core.fleet.guard_notices import (
    AUTO_STOPPED,
    KEEP_HOURS,
    OPEN,
    RESUMED,
    SCHEDULE_STOPPED,
    SNOOZED,
    STOP,
    STOP_FAILED,
    STOPPED,
    STOPPED_ELSEWHERE,
    IdleAlert,
    IdleFollowUp,
    ModelStopped,
    ScheduleNotice,
    Sight,
    SpendRow,
    SpendSummary,
    StopFailed,
)
from bot.core.fleet.lifecycle import aws_error
from bot.core.fleet.state import Audit, Episode, GuardMemory, Operation, Run, Runs, Store, Watch
from bot.core.leadership import FencedOutbox, Leadership
from bot.core.model_versions import RUNNING, STARTING, STOPPING, ModelCatalog, ModelVersion
from bot.core.ports import Notice, Outbox, PostedMessage
from bot.core.pricing import Prices, duration
from bot.core.schedule import Schedule, wall_time
from bot.core.usage import Usage, UsageSource, latest

if TYPE_CHECKING:
    from bot.core.clock import Clock
    from bot.core.routing import ModelRouter


@dataclass(frozen=True)
class GuardConfig:
    channel: str | None  # the ops channel; None: decide and log, post nothing
    interval: timedelta = timedelta(minutes=5)
    alert_after: timedelta = timedelta(minutes=30)
    auto_stop_after: timedelta | None = None
    max_gap: timedelta = timedelta(hours=4)  # back-off cap between reminders
    schedule: Schedule | None = None
    zone: str = "UTC"
    summary_time: time | None = time(9, 0)
    start_lead: timedelta = timedelta(minutes=15)
    schedule_units: int = 1
    sole_client: bool = False  # the bot is the project's only client: it sees all traffic
    owned_versions: frozenset[str] = frozenset()  # versions only the bot calls

    def auto_stop_case(self, version_name: str) -> AutoStop:
        """Whether auto-stop may act on the version, and why (see `auto_stop_case`)."""
        return auto_stop_case(
            version_name,
            configured=self.auto_stop_after is not None,
            sole_client=self.sole_client,
            owned=self.owned_versions,
        )

    @property
    def schedule_grace(self) -> timedelta:
        """How late a window's stop may still be done (after that: missed, left to alerts)."""
        return max(timedelta(hours=1), 2 * self.interval)

    def auto_stop_at(self, idle_since: datetime, version_name: str) -> datetime | None:
        """When auto-stop acts on a version idle since `idle_since` (None: it won't: off, or
        the bot can't see all of the version's traffic)."""
        if self.auto_stop_after is None or self.auto_stop_case(version_name) not in (
            AutoStop.SOLE_CLIENT,
            AutoStop.OWNED,
        ):
            return None
        return idle_since + self.auto_stop_after

    @classmethod
    def from_settings(cls, settings: Any) -> GuardConfig:
        zone = settings.cxr_timezone
        auto = settings.cxr_auto_stop_minutes
        return cls(
            channel=settings.cxr_ops_channel,
            interval=timedelta(minutes=settings.cxr_watch_interval_minutes),
            alert_after=timedelta(minutes=settings.cxr_idle_alert_minutes),
            auto_stop_after=timedelta(minutes=auto) if auto else None,
            max_gap=timedelta(minutes=settings.cxr_idle_alert_max_gap_minutes),
            schedule=Schedule.parse(settings.cxr_schedule, zone) if settings.cxr_schedule else None,
            zone=zone,
            summary_time=settings.cxr_spend_summary_time,
            start_lead=timedelta(minutes=settings.cxr_schedule_start_lead_minutes),
            schedule_units=settings.cxr_schedule_inference_units,
            sole_client=settings.cxr_sole_client,
            owned_versions=frozenset(settings.cxr_owned_versions),
        )


log = logging.getLogger(__package__)  # the fleet logs as "bot.core.fleet"

# Who the guard acts as in the audit log (an admin's button acts as the admin's user ID).
ACTOR = "cost-guard"
SCHEDULE_ACTOR = "schedule"


class FleetActions(Protocol):
    """The fleet's one start path and one stop path, as operations the poller follows."""

    async def request_stop(
        self, version: ModelVersion, actor: str, channel: str, report: dict[str, Any]
    ) -> str | None: ...

    async def request_start(
        self, version: ModelVersion, actor: str, channel: str, units: int, source: str
    ) -> str | None: ...


@dataclass
class GuardContext:
    catalog: ModelCatalog
    usage: UsageSource  # CloudWatch: every client's requests and the units in service
    own: UsageSource  # the bot's own classifications
    store: GuardMemory
    runs: Runs
    audit: Audit
    prices: Prices
    outbox: Outbox
    clock: Clock
    config: GuardConfig
    router: ModelRouter | None
    serving_version: Callable[[], str | None]  # the version the bot classifies with
    # The fleet's one start path and one stop path (the lifecycle's operations).
    stops: FleetActions | None = None
    # CloudWatch's error at the version's last reading ("" or absent: it was read, or is off)
    usage_errors: dict[str, str] = field(default_factory=dict)
    # The leader's fence (`Leadership.act_once`): records an alert or stop under its key, and
    # says no when this replica no longer leads or another leader did it already.
    act_once: Callable[[str], Awaitable[bool]] = field(default=lambda key: _always())

    def now(self) -> datetime:
        return self.clock.now().astimezone(UTC)

    async def version_name(self, arn: str) -> str:
        watch = await self.store.watch(arn)
        return watch.version_name if watch else version_name(arn)

    def tell_router(self, arn: str, running: bool) -> None:
        """The router skips a stopped primary model at once, if `arn` is the one it serves."""
        primary = getattr(self.router, "primary", None) if self.router else None
        if self.router is not None and getattr(primary, "version_arn", None) == arn:
            self.router.set_primary_running(running)

    async def post(self, notice: Notice, *, thread_ts: str | None = None) -> PostedMessage | None:
        """Post in the ops channel; None when there is none (logged instead) or Slack failed."""
        if not self.config.channel:
            log.info(
                "cost_guard.notice", extra={"notice": type(notice).__name__, "facts": vars(notice)}
            )
            return None
        try:
            return await self.outbox.post(self.config.channel, notice, thread_ts=thread_ts)
        except Exception as exc:
            log.warning("cost_guard.post_failed", extra={"error": aws_error(exc)})
            return None

    async def update(self, episode: Episode, notice: Notice) -> None:
        """Rewrite an episode's alert in place (nothing to do while it has no message)."""
        if not (episode.channel and episode.ts):
            return
        try:
            await self.outbox.update(PostedMessage(episode.channel, episode.ts), notice)
        except Exception as exc:
            log.warning("cost_guard.update_failed", extra={"error": aws_error(exc)})


async def _always() -> bool:
    return True  # one instance alone: nothing to fence


class EpisodeAlerts:
    def __init__(self, context: GuardContext) -> None:
        self.context = context

    async def open(self, version: ModelVersion, watch: Watch, now: datetime) -> None:
        """Start an episode for a version idle past the threshold, and post its alert."""
        assert watch.idle_since is not None
        if not await self.context.act_once(f"alert:{version.arn}:{watch.idle_since.isoformat()}"):
            return  # another leader alerted on this idle stretch, or we lead no more
        config = self.context.config
        gap = config.alert_after
        episode = await self.context.store.create_episode(
            version.arn,
            version.name,
            watch.idle_since,
            watch.units,
            now,
            channel=None,
            ts=None,
            next_alert_at=now + gap,
            gap_minutes=gap.total_seconds() / 60,
        )
        log.warning(
            "cost_guard.idle",
            extra={
                "version": version.name,
                "idle_minutes": round((now - watch.idle_since).total_seconds() / 60),
            },
        )
        await self.post_alert(episode, now)

    async def post_alert(self, episode: Episode, now: datetime) -> bool:
        """Post an episode's alert (its thread root); False if Slack can't be reached now.

        The episode is recorded first (the buttons carry its id) and its message after; an
        episode left without a message by a failed post or a crash is posted on a later tick.
        """
        if not self.context.config.channel:
            return True
        posted = await self.context.post(await self._alert(episode, now))
        if posted is None:
            return False
        await self.context.store.set_message(episode.id, posted.channel, posted.ts)
        return True

    async def remind(
        self, episode: Episode, watch: Watch, now: datetime, *, snooze_ended_by: str | None = None
    ) -> None:
        """A reminder in the episode's thread; the next one waits twice as long (up to the cap),
        or the threshold again after a snooze."""
        config = self.context.config
        gap = next_reminder_gap(
            timedelta(minutes=episode.gap_minutes),
            after_snooze=bool(snooze_ended_by),
            alert_after=config.alert_after,
            max_gap=config.max_gap,
        )
        idle_seconds = (now - episode.idle_since).total_seconds()
        hourly = self.context.prices.hourly(watch.units)
        notice = IdleFollowUp(
            version_name=episode.version_name,
            units=watch.units,
            hourly=hourly,
            idle_seconds=idle_seconds,
            idle_cost=hourly * idle_seconds / 3600,
            reminder=episode.alerts,
            next_at=now + gap,
            snooze_ended_by=snooze_ended_by,
            auto_stop_at=config.auto_stop_at(episode.idle_since, episode.version_name),
            sight=self.sight(episode.version_arn, episode.version_name),
            zone=config.zone,
        )
        if episode.ts:
            posted = await self.context.post(notice, thread_ts=episode.ts)
            if posted is None:
                return  # try again next tick
        await self.context.store.record_follow_up(
            episode.id, now, now + gap, gap.total_seconds() / 60
        )
        await self.refresh(episode, now)

    async def close(
        self, episode: Episode, outcome: str, by: str | None, now: datetime, *, idle_end: datetime
    ) -> None:
        """End an episode (traffic, a stop) and show its outcome on the alert."""
        if not await self.context.store.close_episode(episode.id, idle_end, outcome, by):
            return
        alert = await self._alert(episode, idle_end, state=outcome, actor=by, acted_at=now)
        await self.context.update(episode, alert)

    async def refresh(self, episode: Episode, now: datetime) -> None:
        """Re-render an open episode's alert with the current figures and state."""
        store = self.context.store
        fresh = await store.episode(episode.id) or episode
        watch = await store.watch(episode.version_arn)
        snooze = await store.snooze(episode.version_arn)
        state, actor, acted_at, until, detail = OPEN, None, None, None, ""
        if snooze is not None and now < snooze.until:
            state, actor, acted_at, until = SNOOZED, snooze.by, snooze.at, snooze.until
        elif fresh.note and watch and watch.stop_failed_at:
            state, actor, acted_at, detail = STOP_FAILED, None, watch.stop_failed_at, fresh.note
        alert = await self._alert(
            fresh,
            now,
            units=watch.units if watch else fresh.units,
            state=state,
            actor=actor,
            acted_at=acted_at,
            snoozed_until=until,
            detail=detail,
        )
        await self.context.update(fresh, alert)

    def sight(self, version_arn: str, version_name: str) -> Sight:
        """What the guard can see of the version's traffic, and so what auto-stop will do."""
        return Sight(
            auto_stop=self.context.config.auto_stop_case(version_name).value,
            cloudwatch_error=self.context.usage_errors.get(version_arn, ""),
        )

    async def _alert(
        self,
        episode: Episode,
        now: datetime,
        *,
        units: int | None = None,
        state: str = OPEN,
        actor: str | None = None,
        acted_at: datetime | None = None,
        snoozed_until: datetime | None = None,
        detail: str = "",
    ) -> IdleAlert:
        """The episode's alert as of `now` (units: the episode's own unless given)."""
        context, config = self.context, self.context.config
        units = episode.units if units is None else units
        hourly = context.prices.hourly(units)
        idle_seconds = max(0.0, (now - episode.idle_since).total_seconds())
        run = await context.runs.current(episode.version_arn)
        return IdleAlert(
            episode_id=episode.id,
            version_name=episode.version_name,
            units=units,
            hourly=hourly,
            idle_since=episode.idle_since,
            idle_seconds=idle_seconds,
            idle_cost=hourly * idle_seconds / 3600,
            running_since=run.started_at if run else None,
            run_cost=context.prices.running_cost(run.units, run.started_at, now) if run else 0.0,
            threshold_minutes=config.alert_after.total_seconds() / 60,
            auto_stop_at=config.auto_stop_at(episode.idle_since, episode.version_name)
            if state == OPEN
            else None,
            sight=self.sight(episode.version_arn, episode.version_name),
            state=state,
            actor=actor,
            acted_at=acted_at,
            snoozed_until=snoozed_until,
            detail=detail,
            zone=config.zone,
        )


@dataclass(frozen=True)
class StopOrder:
    """One stop: which version, why (the alert's outcome state), who acts, and the episode
    and watch to report on (None: no open episode / never watched)."""

    arn: str
    name: str
    reason: str  # AUTO_STOPPED | STOPPED | SCHEDULE_STOPPED
    actor: str  # ACTOR, SCHEDULE_ACTOR or the admin's user ID
    episode: Episode | None
    watch: Watch | None


class Stopper:
    def __init__(self, context: GuardContext, alerts: EpisodeAlerts) -> None:
        self.context = context
        self.alerts = alerts

    async def stop(self, order: StopOrder, now: datetime) -> tuple[bool, str]:
        """Ask for the stop; (False, the error) when AWS refused."""
        context, watch = self.context, order.watch
        assert context.stops is not None, "the guard stops through the fleet's stop path"
        idle_since = (watch.idle_since if watch else None) or now
        idle_seconds = (now - idle_since).total_seconds()
        retry = (
            f":retry:{watch.stop_failed_at.isoformat()}" if watch and watch.stop_failed_at else ""
        )
        if not await context.act_once(f"stop:{order.arn}:{idle_since.isoformat()}{retry}"):
            return False, "another leader acted, or this replica leads no more"
        report = {
            "reason": order.reason,
            "episode": order.episode.id if order.episode else None,
            "units": watch.units if watch else 1,
            "idle_seconds": idle_seconds,
            "requested_at": now.isoformat(),
            "result": f"ok: {order.reason} after {duration(idle_seconds)} idle",
        }
        version = ModelVersion(arn=order.arn, name=order.name, status=RUNNING)
        error = await context.stops.request_stop(
            version, order.actor, context.config.channel or "", report
        )
        if error is not None:
            await self._failed(order, now, error)
            return False, error
        await context.store.mark_stop_requested(order.arn, now, order.actor)
        await context.store.mark_stop_failed(order.arn, None)
        await context.store.clear_snooze(order.arn)
        context.tell_router(order.arn, running=False)
        log.warning("cost_guard.stopping", extra={"version": order.name, "reason": order.reason})
        return True, ""

    async def _failed(self, order: StopOrder, now: datetime, error: str) -> None:
        context, episode, watch = self.context, order.episode, order.watch
        log.warning("cost_guard.stop_failed", extra={"version": order.name, "error": error})
        first_failure = watch is None or watch.stop_failed_at is None
        await context.store.mark_stop_failed(order.arn, now)
        if episode is not None:
            await context.store.set_note(episode.id, error)
            await self.alerts.refresh(episode, now)
        if first_failure and order.actor in (ACTOR, SCHEDULE_ACTOR):
            hourly = context.prices.hourly(watch.units if watch else 1)
            failed = StopFailed(
                version_name=order.name, reason=order.reason, error=error, hourly=hourly
            )
            await context.post(failed, thread_ts=episode.ts if episode else None)

    # --- the poller's confirmation (`GuardStops`) ----------------------------------------
    async def stopped(self, op: Operation, run: Run | None, now: datetime) -> None:
        """The stop is confirmed (STOPPED): report what ran, what it cost and saves."""
        context = self.context
        report = op.data["report"]
        requested_at = datetime.fromisoformat(report["requested_at"])
        units = int(report.get("units") or 1)
        idle_seconds = float(report.get("idle_seconds") or 0.0)
        hourly = context.prices.hourly(units)
        schedule = context.config.schedule
        next_window = schedule.next_start(now) if schedule else None
        end = run.stopped_at if run and run.stopped_at else now
        notice = ModelStopped(
            version_name=op.version_name,
            reason=report["reason"],
            by=op.user,
            units=units,
            hourly=hourly,
            idle_seconds=idle_seconds,
            idle_cost=hourly * idle_seconds / 3600,
            run_seconds=run.seconds(end) if run else 0.0,
            run_cost=context.prices.running_cost(run.units, run.started_at, end) if run else 0.0,
            next_window=next_window.start if next_window else None,
            saved_until_next_window=hourly * (next_window.start - now).total_seconds() / 3600
            if next_window
            else None,
            zone=context.config.zone,
        )
        episode = await self._episode(report)
        await context.post(notice, thread_ts=episode.ts if episode else None)
        if episode is not None:
            await self.alerts.close(
                episode, report["reason"], op.user, requested_at, idle_end=requested_at
            )
        log.warning("cost_guard.stopped", extra={"version": op.version_name})

    async def not_stopped(self, op: Operation, reason: str) -> None:
        """The stop didn't take effect (or is slow): say so where the stop would be reported."""
        context = self.context
        report = op.data["report"]
        episode = await self._episode(report)
        failed = StopFailed(
            version_name=op.version_name,
            reason=report["reason"],
            error=reason,
            hourly=context.prices.hourly(int(report.get("units") or 1)),
        )
        await context.post(failed, thread_ts=episode.ts if episode else None)

    async def _episode(self, report: dict[str, Any]) -> Episode | None:
        episode_id = report.get("episode")
        return await self.context.store.episode(int(episode_id)) if episode_id else None


class ScheduledActions:
    def __init__(self, context: GuardContext, stopper: Stopper) -> None:
        self.context = context
        self.stopper = stopper

    def planned(self, arn: str, now: datetime) -> bool:
        """Inside a window the serving version is meant to run: no idle alerts for it."""
        schedule = self.context.config.schedule
        return (
            schedule is not None and arn == self.context.serving_version() and schedule.is_on(now)
        )

    async def apply(self, versions: list[ModelVersion], now: datetime) -> None:
        schedule = self.context.config.schedule
        if schedule is None:
            return
        try:
            await self._start(schedule, versions, now)
            await self._stop(schedule, versions, now)
        except Exception:
            log.exception("cost_guard.schedule_failed")

    async def _start(self, schedule: Schedule, versions: list[ModelVersion], now: datetime) -> None:
        """Start the serving version for a window that begins within the lead time."""
        context = self.context
        store, config = context.store, context.config
        due = schedule_start_due(schedule, now, config.start_lead)
        if due is None:
            return
        key, occurrence = due
        if await store.schedule_done(key):
            return
        arn = context.serving_version()
        version = next((v for v in versions if v.arn == arn), None)
        if version is None:
            await store.record_schedule(key, now, "skipped: no serving version")
            return
        if version.status in (RUNNING, STARTING):
            await store.record_schedule(key, now, f"skipped: already {version.status}")
            return
        if occurrence.end - now <= config.start_lead or version.status not in STARTABLE:
            await store.record_schedule(key, now, f"skipped: {version.status}, window nearly over")
            return
        if not await context.act_once(f"schedule:{key}"):
            return  # fenced: another leader, or we lead no more
        if not await store.record_schedule(key, now, "requested"):
            return
        units = config.schedule_units
        assert context.stops is not None, "the schedule starts through the fleet's start path"
        error = await context.stops.request_start(
            version, SCHEDULE_ACTOR, config.channel or "", units, "schedule"
        )
        if error is None:
            await store.save_watch(version.arn, version.name, STARTING, now, units=units)
            await store.mark_start_requested(version.arn, now)
        error = error or ""
        notice = ScheduleNotice(
            version_name=version.name,
            window=occurrence.window.describe(),
            window_start=occurrence.start,
            window_end=occurrence.end,
            units=units,
            hourly=context.prices.hourly(units),
            ok=not error,
            error=error,
            zone=config.zone,
        )
        await context.post(notice)

    async def _stop(self, schedule: Schedule, versions: list[ModelVersion], now: datetime) -> None:
        """Stop what ran in a window that has just ended (unless the next one follows)."""
        context = self.context
        store, config = context.store, context.config
        what, key, ended_at = schedule_stop_due(
            schedule, now, lead=config.start_lead, grace=config.schedule_grace
        )
        if what is ScheduledStop.NONE or await store.schedule_done(key):
            return
        if what is ScheduledStop.MISSED:
            await store.record_schedule(key, now, "missed: the bot was not running")
            return
        if what is ScheduledStop.FOLLOWED:
            await store.record_schedule(key, now, "skipped: the next window follows")
            return
        if not await store.record_schedule(key, now, "done"):
            return
        assert ended_at is not None
        for version in versions:
            run = await context.runs.current(version.arn)
            if version.status != RUNNING or run is None or run.started_at >= ended_at:
                continue  # started after the window: idle alerts look after it
            snooze = await store.snooze(version.arn)
            if snooze is not None and now < snooze.until:
                await context.audit.record(
                    now, SCHEDULE_ACTOR, "stop", version.name, f"skipped: kept by {snooze.by}"
                )
                continue
            order = StopOrder(
                version.arn,
                version.name,
                SCHEDULE_STOPPED,
                SCHEDULE_ACTOR,
                episode=await store.open_episode(version.arn),
                watch=await store.watch(version.arn),
            )
            await self.stopper.stop(order, now)


STOP_GRACE = timedelta(minutes=30)  # a requested stop may take this long to be visible
METRICS_OVERLAP = timedelta(minutes=10)  # CloudWatch datapoints can arrive a few minutes late
METRICS_LOOKBACK = timedelta(hours=24)  # how far back to look for a run begun elsewhere
WATCHER = "watcher"  # sightings in the audit log


class Observer:
    def __init__(self, context: GuardContext, alerts: EpisodeAlerts) -> None:
        self.context = context
        self.alerts = alerts

    async def observe(self, versions: list[ModelVersion], now: datetime) -> None:
        """Open and close runs as versions are seen running or stopped."""
        listed = {v.arn for v in versions}
        for version in versions:
            try:
                if version.status == RUNNING:
                    await self._running(version, now)
                elif not billed(version.status):  # STOPPING is billed: the run goes on
                    await self.stopped(version, now)
            except Exception:
                log.exception("cost_guard.observe_failed", extra={"version": version.name})
        if versions:  # a version that vanished (deleted) is not running any more
            for run in await self.context.runs.open_runs():
                if run.version_arn not in listed:
                    await self.context.runs.close_run(run.version_arn, now)

    async def _running(self, version: ModelVersion, now: datetime) -> None:
        context = self.context
        store, runs = context.store, context.runs
        watch = await store.watch(version.arn)
        if watch and watch.stop_requested_at and now - watch.stop_requested_at < STOP_GRACE:
            return  # we asked for a stop; DescribeProjectVersions hasn't caught up yet
        run = await runs.current(version.arn)
        # While an operation is open the poller ticks every few seconds; CloudWatch is read at
        # most about twice per guard interval all the same (GetMetricData is billed, and
        # throttled). In between: no news from it.
        fresh = (
            run is not None
            and watch is not None
            and watch.metrics_until is not None
            and now - watch.metrics_until < context.config.interval / 2
        )
        usage = Usage(requests=None) if fresh else await self._read_usage(version, run, watch, now)
        project = project_name(version.arn)
        own = await context.own.usage(project, version.name, now - METRICS_LOOKBACK, now)
        if not fresh:
            if usage.ok:
                context.usage_errors.pop(version.arn, None)
            else:
                context.usage_errors.setdefault(version.arn, usage.error or "no answer")
        units = max(1, round(usage.units)) if usage.units else max(1, version.min_units or 1)
        if run is None:
            started = usage.running_since or now
            source = "observed"
            if watch and watch.stop_requested_at:  # the stop we asked for never happened
                started = watch.stop_requested_at
                await store.mark_stop_requested(version.arn, None, None)
            elif watch and watch.start_requested_at:
                source = "schedule"
            run = await runs.open_run(version.arn, min(started, now), units, source)
            await store.mark_start_requested(version.arn, None)
            await context.audit.record(
                now, WATCHER, "observed:running", version.name, f"ok: {units} units ({source})"
            )
            log.info(
                "cost_guard.run_opened",
                extra={"version": version.name, "since": run.started_at.isoformat()},
            )
            context.tell_router(version.arn, running=True)
        elif run.units != units and usage.units:
            await runs.set_units(version.arn, units)
        last_request = latest(usage.last_request, own.last_request)
        known = latest(last_request, watch.last_request_at if watch else None)
        idle_since = max(run.started_at, known) if known else run.started_at
        await store.save_watch(
            version.arn,
            version.name,
            version.status,
            now,
            units=units,
            last_request_at=last_request,
            idle_since=idle_since,
            metrics_until=now if usage.ok and not fresh else None,
        )

    async def _read_usage(
        self, version: ModelVersion, run: Run | None, watch: Watch | None, now: datetime
    ) -> Usage:
        """CloudWatch since the last read (with overlap), or a day back for a new sighting."""
        if run is None or watch is None or watch.metrics_until is None:
            start = now - METRICS_LOOKBACK
            if run is not None:
                start = max(start, run.started_at - METRICS_OVERLAP)
        else:
            start = max(now - METRICS_LOOKBACK, watch.metrics_until - METRICS_OVERLAP)
        try:
            return await self.context.usage.usage(
                project_name(version.arn), version.name, start, now
            )
        except Exception as exc:  # a source must not stop the guard
            error = aws_error(exc)
            log.warning("cost_guard.usage_failed", extra={"error": error})
            self.context.usage_errors[version.arn] = error
            return Usage.unknown()

    async def stopped(self, version: ModelVersion, now: datetime) -> None:
        """A version seen not running: close its run and its episode, forget its stop and
        snooze (a button's Stop also lands here when the console was quicker)."""
        context = self.context
        store, runs = context.store, context.runs
        watch = await store.watch(version.arn)
        if await runs.current(version.arn) is not None:
            await runs.close_run(version.arn, now)
            await context.audit.record(
                now, WATCHER, "observed:stopped", version.name, version.status
            )
            context.tell_router(version.arn, running=False)
        episode = await store.open_episode(version.arn)
        if episode is not None:
            await self.alerts.close(episode, STOPPED_ELSEWHERE, None, now, idle_end=now)
        if watch is None and version.status != STARTING:
            return  # never ran while we watched: nothing to remember
        await store.save_watch(
            version.arn, version.name, version.status, now, units=watch.units if watch else 1
        )
        if watch and (watch.stop_requested_at or watch.stop_failed_at):
            await store.mark_stop_requested(version.arn, None, None)
            await store.mark_stop_failed(version.arn, None)
        await store.clear_snooze(version.arn)


class IdleRules:
    def __init__(
        self,
        context: GuardContext,
        alerts: EpisodeAlerts,
        stopper: Stopper,
        observer: Observer,
        schedule: ScheduledActions,
    ) -> None:
        self.context = context
        self.alerts = alerts
        self.stopper = stopper
        self.observer = observer
        self.schedule = schedule

    async def judge(self, version: ModelVersion, now: datetime) -> None:
        """Apply the rules to one RUNNING version after it has been observed this tick."""
        context = self.context
        store, config = context.store, context.config
        watch = await store.watch(version.arn)
        run = await context.runs.current(version.arn)
        if watch is None or run is None or watch.idle_since is None:
            return  # not metered
        episode = await store.open_episode(version.arn)
        snooze = await store.snooze(version.arn)
        facts = IdleFacts(
            idle_since=watch.idle_since,
            episode_idle_since=episode.idle_since if episode else None,
            episode_posted=bool(episode and episode.ts),
            next_alert_at=episode.next_alert_at if episode else None,
            planned=self.schedule.planned(version.arn, now),
            snooze_until=snooze.until if snooze else None,
            snooze_expired=snooze.expired if snooze else True,
            stop_requested_at=watch.stop_requested_at,
            auto_stop_allowed=config.auto_stop_case(version.name) in AUTO_STOP_ALLOWED,
        )
        settings = IdleSettings(
            alert_after=config.alert_after,
            auto_stop_after=config.auto_stop_after,
            has_channel=bool(config.channel),
            stop_grace=STOP_GRACE,
        )
        for action in idle_actions(facts, settings, now):
            if action is Idle.RESUMED and episode is not None:
                await self.alerts.close(episode, RESUMED, None, now, idle_end=watch.idle_since)
                episode = None
            elif action is Idle.EXPIRE_SNOOZE:
                await store.mark_snooze_expired(version.arn)
            elif action is Idle.REMIND_AFTER_SNOOZE and episode is not None and snooze:
                await self.alerts.remind(episode, watch, now, snooze_ended_by=snooze.by)
            elif action is Idle.AUTO_STOP:
                order = StopOrder(
                    version.arn, version.name, AUTO_STOPPED, ACTOR, episode=episode, watch=watch
                )
                await self.stopper.stop(order, now)
            elif action is Idle.OPEN_ALERT:
                await self.alerts.open(version, watch, now)
            elif action is Idle.POST_ALERT and episode is not None:
                await self.alerts.post_alert(episode, now)
            elif action is Idle.REMIND and episode is not None:
                await self.alerts.remind(episode, watch, now)


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
