"""The cost guard: no Rekognition model runs idle unnoticed.

A Custom Labels model bills per inference-unit hour while RUNNING, used or not. Every poll
(`tick`) the guard looks at every version of the project, including versions started outside
the bot, and for each RUNNING one works out when it started, its units and when it last
served a request (the bot's own classifications and CloudWatch, so other clients count).

Rules (all state in SQLite, see `bot.state.cost_guard`):

- **Idle** = no request from anyone since max(last request, run start).
- **Episode**: one idle stretch of one version. After `alert_after` idle the guard posts an
  alert (the episode's thread root, with Stop now / Keep 1 h / Keep 4 h buttons). Reminders
  go in that thread, backed off: at 2N, 4N, 8N… idle, never more than `max_gap` apart. A
  request ends the episode (the alert is updated in place to say so); the next idle stretch
  is a new episode and a new thread. A restart reads the episode back and does not re-alert.
- **Snooze** (Keep 1 h / 4 h): no reminders and no auto-stop for that version until it
  expires. If the same episode is still idle then, a reminder goes into the same thread and
  the back-off starts again from N; if traffic came back meanwhile, a later idle stretch is a
  new episode as usual.
- **Auto-stop** (off unless `auto_stop_after` is set): after that much idle, stop the
  version, post what was stopped, what it cost and saves, and how to start it again.
- **Schedule**: start the serving version `start_lead` before each window, stop what ran in
  the window when it ends (unless snoozed), announce both. Inside a window the serving
  version raises no idle alert and is not auto-stopped: running it is the plan.
- **Stops** (auto-stop, button, schedule) go through `ModelCatalog.stop`, are written to
  the audit log, close the run at once with the stop time (billing ends while the model is
  STOPPING, and `/cxr status` should stop the meter at the moment the guard acts), and tell
  the router, so the local model answers if fallback is on. A stop the guard asked for is
  given `STOP_GRACE` to show up in DescribeProjectVersions before the version counts as
  running again.
- **Daily summary** at `summary_time` (local): the previous local day's running hours,
  requests served, cost and cost per classified image, per version.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bot.core.cost_notices import (
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
    SpendRow,
    SpendSummary,
    StopFailed,
)
from bot.core.model_versions import RUNNING, STARTING, ModelCatalog, ModelVersion
from bot.core.ports import Notice, Outbox, PostedMessage
from bot.core.pricing import Prices, duration
from bot.core.schedule import Occurrence, Schedule, wall_time
from bot.core.usage import Usage, UsageSource, latest

if TYPE_CHECKING:
    from bot.core.clock import Clock
    from bot.core.routing import ModelRouter
    from bot.state.audit import AuditLog
    from bot.state.cost_guard import CostGuardStore, Episode, Watch
    from bot.state.runs import Run, RunStore

log = logging.getLogger(__name__)

ACTOR = "cost-guard"
SCHEDULE_ACTOR = "schedule"
STOP_GRACE = timedelta(minutes=30)  # a requested stop may take this long to be visible
METRICS_OVERLAP = timedelta(minutes=10)  # CloudWatch datapoints can arrive a few minutes late
METRICS_LOOKBACK = timedelta(hours=24)  # how far back to look for a run begun elsewhere
STARTABLE = frozenset({"TRAINING_COMPLETED", "STOPPED", "FAILED"})


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

    @property
    def schedule_grace(self) -> timedelta:
        """How late a window's stop may still be done (after that: missed, left to alerts)."""
        return max(timedelta(hours=1), 2 * self.interval)

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
        )


@dataclass(frozen=True)
class PressResult:
    ok: bool
    message: str = ""  # for the presser only (ephemeral); empty when the alert says it all


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
        from bot.core.cost_notices import local_time
        from bot.core.pricing import usd

        text = (
            f"{self.version_name}: running {self.units} unit{'s' if self.units != 1 else ''} "
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


class CostGuard:
    def __init__(
        self,
        *,
        catalog: ModelCatalog,
        usage: UsageSource,
        own: UsageSource,
        store: CostGuardStore,
        runs: RunStore,
        audit: AuditLog,
        prices: Prices,
        outbox: Outbox,
        clock: Clock,
        config: GuardConfig,
        router: ModelRouter | None = None,
        serving_version: Callable[[], str | None] | None = None,
    ) -> None:
        self.catalog = catalog
        self.usage = usage
        self.own = own
        self.store = store
        self.runs = runs
        self.audit = audit
        self.prices = prices
        self.outbox = outbox
        self.clock = clock
        self.config = config
        self.router = router
        self._serving = serving_version or (lambda: None)
        self._lock = asyncio.Lock()
        self._usage_ok: dict[str, bool] = {}  # was CloudWatch readable for a version this tick
        self.ticks = 0  # completed polls (tests and /healthz can watch it move)
        self.last_tick_at: datetime | None = None

    # --- the loop ------------------------------------------------------------------------
    async def run(self) -> None:
        """Poll forever: one tick, then sleep the configured interval."""
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cost_guard.tick_failed")
            await self.clock.sleep(self.config.interval.total_seconds())

    async def tick(self) -> None:
        """One poll: observe every version, apply the schedule, judge idleness, summarise."""
        async with self._lock:
            now = self._now()
            try:
                versions = await self.catalog.versions()
            except Exception as exc:
                log.warning("cost_guard.describe_failed", extra={"error": _error(exc)})
                versions = None
            if versions is not None:
                await self._observe_all(versions, now)
                await self._apply_schedule(versions, now)
                for version in versions:
                    if version.status == RUNNING:
                        await self._guard(version, now)
            await self._daily_summary(now)
            self.ticks += 1
            self.last_tick_at = now

    def _now(self) -> datetime:
        return self.clock.now().astimezone(UTC)

    # --- observation: runs open and close as versions are seen ---------------------------
    async def _observe_all(self, versions: list[ModelVersion], now: datetime) -> None:
        listed = {v.arn for v in versions}
        for version in versions:
            try:
                if version.status == RUNNING:
                    await self._observe_running(version, now)
                else:
                    await self._observe_stopped(version, now)
            except Exception:
                log.exception("cost_guard.observe_failed", extra={"version": version.name})
        if versions:  # a version that vanished (deleted) is not running any more
            for run in self.runs.open_runs():
                if run.version_arn not in listed:
                    self.runs.close_run(run.version_arn, now)

    async def _observe_running(self, version: ModelVersion, now: datetime) -> None:
        watch = self.store.watch(version.arn)
        if watch and watch.stop_requested_at and now - watch.stop_requested_at < STOP_GRACE:
            return  # we asked for a stop; DescribeProjectVersions hasn't caught up yet
        run = self.runs.current(version.arn)
        usage = await self._read_usage(version, run, watch, now)
        own = await self.own.usage(_project(version), version.name, now - METRICS_LOOKBACK, now)
        self._usage_ok[version.arn] = usage.ok
        units = max(1, round(usage.units)) if usage.units else max(1, version.min_units or 1)
        if run is None:
            started = usage.running_since or now
            source = "observed"
            if watch and watch.stop_requested_at:  # the stop we asked for never happened
                started = watch.stop_requested_at
                self.store.mark_stop_requested(version.arn, None, None)
            elif watch and watch.start_requested_at:
                source = "schedule"
            run = self.runs.open_run(version.arn, min(started, now), units, source)
            self.store.mark_start_requested(version.arn, None)
            self.audit.record(
                now, "watcher", "observed:running", version.name, f"ok: {units} units ({source})"
            )
            log.info(
                "cost_guard.run_opened",
                extra={"version": version.name, "since": run.started_at.isoformat()},
            )
            if self._is_primary(version.arn) and self.router is not None:
                self.router.set_primary_running(True)
        elif run.units != units and usage.units:
            self.runs.set_units(version.arn, units)
        last_request = latest(usage.last_request, own.last_request)
        known = latest(last_request, watch.last_request_at if watch else None)
        idle_since = max(run.started_at, known) if known else run.started_at
        self.store.save_watch(
            version.arn,
            version.name,
            version.status,
            now,
            units=units,
            last_request_at=last_request,
            idle_since=idle_since,
            metrics_until=now if usage.ok else None,
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
            return await self.usage.usage(_project(version), version.name, start, now)
        except Exception as exc:  # a source must not stop the guard
            log.warning("cost_guard.usage_failed", extra={"error": _error(exc)})
            return Usage.unknown()

    async def _observe_stopped(self, version: ModelVersion, now: datetime) -> None:
        watch = self.store.watch(version.arn)
        run = self.runs.current(version.arn)
        if run is not None:
            self.runs.close_run(version.arn, now)
            self.audit.record(now, "watcher", "observed:stopped", version.name, version.status)
            if self._is_primary(version.arn) and self.router is not None:
                self.router.set_primary_running(False)
        episode = self.store.open_episode(version.arn)
        if episode is not None:
            await self._close_episode(episode, STOPPED_ELSEWHERE, None, now, idle_end=now)
        if watch is None and version.status != STARTING:
            return  # never ran while we watched: nothing to remember
        self.store.save_watch(
            version.arn, version.name, version.status, now, units=watch.units if watch else 1
        )
        if watch and (watch.stop_requested_at or watch.stop_failed_at):
            self.store.mark_stop_requested(version.arn, None, None)
            self.store.mark_stop_failed(version.arn, None)
        self.store.clear_snooze(version.arn)

    # --- idle alerts, reminders, snoozes and auto-stop -----------------------------------
    async def _guard(self, version: ModelVersion, now: datetime) -> None:
        watch = self.store.watch(version.arn)
        run = self.runs.current(version.arn)
        if watch is None or run is None or watch.idle_since is None:
            return  # not metered (a stop is on its way)
        idle_since = watch.idle_since
        idle = now - idle_since
        episode = self.store.open_episode(version.arn)
        if episode is not None and idle_since > episode.idle_since:
            await self._close_episode(episode, RESUMED, None, now, idle_end=idle_since)
            episode = None
        if self._scheduled_now(version.arn, now):
            return
        snooze = self.store.snooze(version.arn)
        if snooze is not None and now < snooze.until:
            return
        reminded = False
        if snooze is not None and not snooze.expired:
            self.store.mark_snooze_expired(version.arn)
            if episode is not None:
                await self._remind(episode, watch, now, snooze_ended_by=snooze.by)
                reminded = True
        auto_stop = self.config.auto_stop_after
        if auto_stop is not None and idle >= auto_stop and not self._usage_ok.get(version.arn):
            # Other clients' traffic is invisible while CloudWatch can't be read: alert, but
            # don't stop a model somebody may be using.
            log.warning("cost_guard.auto_stop_held", extra={"version": version.name})
        elif auto_stop is not None and idle >= auto_stop:
            await self._stop(
                version.arn, version.name, AUTO_STOPPED, ACTOR, now, episode=episode, watch=watch
            )
            return
        if idle < self.config.alert_after or reminded:
            return
        if episode is None:
            await self._open_episode(version, watch, now)
        elif episode.ts is None and self.config.channel:
            await self._post_alert(episode, now)  # its first post failed: the alert, not a reminder
        elif now >= episode.next_alert_at:
            await self._remind(episode, watch, now)

    async def _open_episode(self, version: ModelVersion, watch: Watch, now: datetime) -> None:
        assert watch.idle_since is not None
        gap = self.config.alert_after
        episode = self.store.create_episode(
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
        await self._post_alert(episode, now)

    async def _post_alert(self, episode: Episode, now: datetime) -> bool:
        """Post an episode's alert (its thread root); False if Slack can't be reached now.

        The episode is recorded first (the buttons carry its id) and its message after; an
        episode left without a message by a failed post or a crash is posted on a later tick.
        """
        if not self.config.channel:
            return True
        alert = self._alert(
            episode_id=episode.id,
            name=episode.version_name,
            arn=episode.version_arn,
            units=episode.units,
            idle_since=episode.idle_since,
            now=now,
        )
        posted = await self._post(alert)
        if posted is None:
            return False
        self.store.set_message(episode.id, posted.channel, posted.ts)
        return True

    async def _remind(
        self, episode: Episode, watch: Watch, now: datetime, *, snooze_ended_by: str | None = None
    ) -> None:
        if snooze_ended_by:
            gap = self.config.alert_after  # back-off starts again after a snooze
        else:
            gap = min(timedelta(minutes=episode.gap_minutes) * 2, self.config.max_gap)
        idle_seconds = (now - episode.idle_since).total_seconds()
        hourly = self.prices.hourly(watch.units)
        notice = IdleFollowUp(
            version_name=episode.version_name,
            units=watch.units,
            hourly=hourly,
            idle_seconds=idle_seconds,
            idle_cost=hourly * idle_seconds / 3600,
            reminder=episode.alerts,
            next_at=now + gap,
            snooze_ended_by=snooze_ended_by,
            auto_stop_at=self._auto_stop_at(episode.idle_since),
            zone=self.config.zone,
        )
        if episode.ts:
            posted = await self._post(notice, thread_ts=episode.ts)
            if posted is None:
                return  # try again next tick
        self.store.record_follow_up(episode.id, now, now + gap, gap.total_seconds() / 60)
        await self._refresh(episode, now)

    def _auto_stop_at(self, idle_since: datetime) -> datetime | None:
        if self.config.auto_stop_after is None:
            return None
        return idle_since + self.config.auto_stop_after

    async def _close_episode(
        self,
        episode: Episode,
        outcome: str,
        by: str | None,
        now: datetime,
        *,
        idle_end: datetime,
        detail: str = "",
    ) -> None:
        if not self.store.close_episode(episode.id, idle_end, outcome, by):
            return
        alert = self._alert(
            episode_id=episode.id,
            name=episode.version_name,
            arn=episode.version_arn,
            units=episode.units,
            idle_since=episode.idle_since,
            now=idle_end,
            state=outcome,
            actor=by,
            acted_at=now,
            detail=detail,
        )
        await self._update(episode, alert)

    async def _refresh(self, episode: Episode, now: datetime) -> None:
        """Re-render an open episode's alert with the current figures and state."""
        fresh = self.store.episode(episode.id) or episode
        watch = self.store.watch(episode.version_arn)
        snooze = self.store.snooze(episode.version_arn)
        state, actor, acted_at, until, detail = OPEN, None, None, None, ""
        if snooze is not None and now < snooze.until:
            state, actor, acted_at, until = SNOOZED, snooze.by, snooze.at, snooze.until
        elif fresh.note and watch and watch.stop_failed_at:
            state, actor, acted_at, detail = STOP_FAILED, None, watch.stop_failed_at, fresh.note
        alert = self._alert(
            episode_id=fresh.id,
            name=fresh.version_name,
            arn=fresh.version_arn,
            units=watch.units if watch else fresh.units,
            idle_since=fresh.idle_since,
            now=now,
            state=state,
            actor=actor,
            acted_at=acted_at,
            snoozed_until=until,
            detail=detail,
        )
        await self._update(fresh, alert)

    def _alert(
        self,
        *,
        episode_id: int,
        name: str,
        arn: str,
        units: int,
        idle_since: datetime,
        now: datetime,
        state: str = OPEN,
        actor: str | None = None,
        acted_at: datetime | None = None,
        snoozed_until: datetime | None = None,
        detail: str = "",
    ) -> IdleAlert:
        hourly = self.prices.hourly(units)
        idle_seconds = max(0.0, (now - idle_since).total_seconds())
        run = self.runs.current(arn)
        return IdleAlert(
            episode_id=episode_id,
            version_name=name,
            units=units,
            hourly=hourly,
            idle_since=idle_since,
            idle_seconds=idle_seconds,
            idle_cost=hourly * idle_seconds / 3600,
            running_since=run.started_at if run else None,
            run_cost=self.prices.running_cost(run.units, run.started_at, now) if run else 0.0,
            threshold_minutes=self.config.alert_after.total_seconds() / 60,
            auto_stop_at=self._auto_stop_at(idle_since) if state == OPEN else None,
            state=state,
            actor=actor,
            acted_at=acted_at,
            snoozed_until=snoozed_until,
            detail=detail,
            zone=self.config.zone,
        )

    # --- stopping ------------------------------------------------------------------------
    async def _stop(
        self,
        arn: str,
        name: str,
        reason: str,
        actor: str,
        now: datetime,
        *,
        episode: Episode | None,
        watch: Watch | None,
    ) -> tuple[bool, str]:
        """Stop a version for the guard, a button or the schedule; report and record it."""
        try:
            await self.catalog.stop(arn)
        except Exception as exc:
            error = _error(exc)
            log.warning("cost_guard.stop_failed", extra={"version": name, "error": error})
            self.audit.record(now, actor, "stop", name, f"failed: {error}")
            first_failure = watch is None or watch.stop_failed_at is None
            self.store.mark_stop_failed(arn, now)
            if episode is not None:
                self.store.set_note(episode.id, error)
                await self._refresh(episode, now)
            if first_failure and actor in (ACTOR, SCHEDULE_ACTOR):
                hourly = self.prices.hourly(watch.units if watch else 1)
                await self._post(
                    StopFailed(version_name=name, reason=reason, error=error, hourly=hourly),
                    thread_ts=episode.ts if episode else None,
                )
            return False, error
        idle_since = (watch.idle_since if watch else None) or now
        units = watch.units if watch else 1
        closed = self.runs.close_run(arn, now)
        self.store.mark_stop_requested(arn, now, actor)
        self.store.mark_stop_failed(arn, None)
        self.store.clear_snooze(arn)
        idle_seconds = (now - idle_since).total_seconds()
        self.audit.record(
            now, actor, "stop", name, f"ok: {reason} after {duration(idle_seconds)} idle"
        )
        if self._is_primary(arn) and self.router is not None:
            self.router.set_primary_running(False)
        hourly = self.prices.hourly(units)
        next_window = self._next_window(now)
        notice = ModelStopped(
            version_name=name,
            reason=reason,
            by=actor,
            units=units,
            hourly=hourly,
            idle_seconds=idle_seconds,
            idle_cost=hourly * idle_seconds / 3600,
            run_seconds=closed.seconds(now) if closed else 0.0,
            run_cost=self.prices.running_cost(closed.units, closed.started_at, now)
            if closed
            else 0.0,
            next_window=next_window.start if next_window else None,
            saved_until_next_window=hourly * (next_window.start - now).total_seconds() / 3600
            if next_window
            else None,
            zone=self.config.zone,
        )
        await self._post(notice, thread_ts=episode.ts if episode else None)
        if episode is not None:
            await self._close_episode(episode, reason, actor, now, idle_end=now)
        log.warning("cost_guard.stopped", extra={"version": name, "reason": reason})
        return True, ""

    # --- buttons -------------------------------------------------------------------------
    async def press(self, episode_id: int, action: str, user: str) -> PressResult:
        """An admin pressed Stop now / Keep 1 h / Keep 4 h on an idle alert."""
        async with self._lock:
            now = self._now()
            episode = self.store.episode(episode_id)
            if episode is None:
                return PressResult(False, "I don't know that alert any more.")
            if not episode.open:
                by = f" by <@{episode.outcome_by}>" if _is_user(episode.outcome_by) else ""
                return PressResult(
                    False, f"Already handled: {episode.version_name} {episode.outcome}{by}."
                )
            if action == STOP:
                return await self._press_stop(episode, user, now)
            if action in KEEP_HOURS:
                until = now + timedelta(hours=KEEP_HOURS[action])
                self.store.set_snooze(episode.version_arn, until, user, now, episode.id)
                self.store.set_note(episode.id, None)
                self.audit.record(
                    now, user, "snooze", episode.version_name, f"ok: until {until.isoformat()}"
                )
                await self._refresh(episode, now)
                return PressResult(True)
            return PressResult(False, f"Unknown action {action!r}.")

    def record_refusal(self, episode_id: int, action: str, user: str) -> None:
        """A non-admin pressed a button: audited, nothing else changes."""
        episode = self.store.episode(episode_id)
        target = episode.version_name if episode else f"episode {episode_id}"
        self.audit.record(self._now(), user, f"refused:{action}", target, "refused: not an admin")

    async def _press_stop(self, episode: Episode, user: str, now: datetime) -> PressResult:
        try:
            versions = await self.catalog.versions()
        except Exception as exc:
            return PressResult(False, f"I couldn't reach Rekognition ({_error(exc)}); try again.")
        version = next((v for v in versions if v.arn == episode.version_arn), None)
        if version is None or version.status != RUNNING:
            if version is not None:
                await self._observe_stopped(version, now)  # closes the run and the episode
            await self._close_episode(episode, STOPPED_ELSEWHERE, None, now, idle_end=now)
            status = version.status.lower() if version else "gone"
            return PressResult(False, f"{episode.version_name} is already {status}.")
        watch = self.store.watch(episode.version_arn)
        ok, error = await self._stop(
            version.arn, version.name, STOPPED, user, now, episode=episode, watch=watch
        )
        if not ok:
            return PressResult(False, f"The stop failed: {error}. The alert stays open.")
        return PressResult(True)

    # --- the schedule --------------------------------------------------------------------
    def _scheduled_now(self, arn: str, now: datetime) -> bool:
        """Inside a window the serving version is meant to run: no idle alerts for it."""
        schedule = self.config.schedule
        return schedule is not None and arn == self._serving() and schedule.is_on(now)

    def _next_window(self, now: datetime) -> Occurrence | None:
        schedule = self.config.schedule
        return schedule.next_start(now) if schedule else None

    async def _apply_schedule(self, versions: list[ModelVersion], now: datetime) -> None:
        schedule = self.config.schedule
        if schedule is None:
            return
        try:
            await self._scheduled_start(schedule, versions, now)
            await self._scheduled_stop(schedule, versions, now)
        except Exception:
            log.exception("cost_guard.schedule_failed")

    async def _scheduled_start(
        self, schedule: Schedule, versions: list[ModelVersion], now: datetime
    ) -> None:
        lead = self.config.start_lead
        due = [
            o
            for o in schedule.occurrences(now, now + lead + timedelta(seconds=1))
            if o.start - lead <= now < o.end
        ]
        if not due:
            return
        occurrence = due[0]
        key = f"start@{occurrence.start.isoformat()}"
        if self.store.schedule_done(key):
            return
        arn = self._serving()
        version = next((v for v in versions if v.arn == arn), None)
        if version is None:
            self.store.record_schedule(key, now, "skipped: no serving version")
            return
        if version.status in (RUNNING, STARTING):
            self.store.record_schedule(key, now, f"skipped: already {version.status}")
            return
        if occurrence.end - now <= lead or version.status not in STARTABLE:
            self.store.record_schedule(key, now, f"skipped: {version.status}, window nearly over")
            return
        if not self.store.record_schedule(key, now, "requested"):
            return
        units = self.config.schedule_units
        error = ""
        try:
            await self.catalog.start(version.arn, units, None)
        except Exception as exc:
            error = _error(exc)
            self.audit.record(now, SCHEDULE_ACTOR, "start", version.name, f"failed: {error}")
        else:
            self.audit.record(now, SCHEDULE_ACTOR, "start", version.name, "requested")
            self.store.save_watch(version.arn, version.name, STARTING, now, units=units)
            self.store.mark_start_requested(version.arn, now)
        notice = ScheduleNotice(
            version_name=version.name,
            window=occurrence.window.describe(),
            window_start=occurrence.start,
            window_end=occurrence.end,
            units=units,
            hourly=self.prices.hourly(units),
            ok=not error,
            error=error,
            zone=self.config.zone,
        )
        await self._post(notice)

    async def _scheduled_stop(
        self, schedule: Schedule, versions: list[ModelVersion], now: datetime
    ) -> None:
        ended = schedule.last_end(now)
        if ended is None:
            return
        key = f"stop@{ended.end.isoformat()}"
        if self.store.schedule_done(key):
            return
        if now - ended.end > self.config.schedule_grace:
            self.store.record_schedule(key, now, "missed: the bot was not running")
            return
        upcoming = schedule.next_start(now - timedelta(seconds=1))
        if schedule.is_on(now) or (upcoming and upcoming.start - now <= self.config.start_lead):
            self.store.record_schedule(key, now, "skipped: the next window follows")
            return
        if not self.store.record_schedule(key, now, "done"):
            return
        for version in versions:
            run = self.runs.current(version.arn)
            if version.status != RUNNING or run is None or run.started_at >= ended.end:
                continue  # started after the window: idle alerts look after it
            snooze = self.store.snooze(version.arn)
            if snooze is not None and now < snooze.until:
                self.audit.record(
                    now, SCHEDULE_ACTOR, "stop", version.name, f"skipped: kept by {snooze.by}"
                )
                continue
            await self._stop(
                version.arn,
                version.name,
                SCHEDULE_STOPPED,
                SCHEDULE_ACTOR,
                now,
                episode=self.store.open_episode(version.arn),
                watch=self.store.watch(version.arn),
            )

    # --- the daily summary ---------------------------------------------------------------
    async def _daily_summary(self, now: datetime) -> None:
        at = self.config.summary_time
        if at is None:
            return
        zone = ZoneInfo(self.config.zone)
        today = now.astimezone(zone).date()
        if now < wall_time(today, at, zone):
            return
        day = today - timedelta(days=1)
        if self.store.summary_sent(day):
            return
        try:
            summary = await self.spend_summary(day, now)
            posted = await self._post(summary)
        except Exception:
            log.exception("cost_guard.summary_failed")
            return
        if posted is None and self.config.channel:
            return  # try again next tick
        self.store.record_summary(
            day, now, posted.channel if posted else None, posted.ts if posted else None
        )

    async def spend_summary(self, day: date, now: datetime | None = None) -> SpendSummary:
        """What each version cost on one local day (up to `now` if the day isn't over)."""
        now = now or self._now()
        zone = ZoneInfo(self.config.zone)
        start = wall_time(day, time(0, 0), zone)
        end = min(wall_time(day + timedelta(days=1), time(0, 0), zone), now)
        per_version: dict[str, dict[str, Any]] = {}
        for run in self.runs.overlapping(start, end):
            begin, finish = max(run.started_at, start), min(run.stopped_at or now, end)
            if finish <= begin:
                continue
            entry = per_version.setdefault(
                run.version_arn, {"seconds": 0.0, "cost": 0.0, "units": 0}
            )
            entry["seconds"] += (finish - begin).total_seconds()
            entry["cost"] += self.prices.running_cost(run.units, begin, finish)
            entry["units"] = max(entry["units"], run.units)
        rows = []
        for arn, entry in per_version.items():
            name = self._version_name(arn)
            usage = await self.usage.usage(_project_of(arn), name, start, end)
            idle_seconds, idle_cost = self._idle_in(arn, start, end, now)
            rows.append(
                SpendRow(
                    version_name=name,
                    running_seconds=entry["seconds"],
                    units=entry["units"],
                    cost=entry["cost"],
                    requests=usage.requests if usage.ok else None,
                    images=self.store.classified(name, start, end),
                    idle_seconds=idle_seconds,
                    idle_cost=idle_cost,
                )
            )
        rows.sort(key=lambda row: -row.cost)
        running = [self._version_name(run.version_arn) for run in self.runs.open_runs()]
        return SpendSummary(day=day, rows=rows, running_now=sorted(running), zone=self.config.zone)

    def _idle_in(
        self, arn: str, start: datetime, end: datetime, now: datetime
    ) -> tuple[float, float]:
        seconds = cost = 0.0
        for episode in self.store.episodes():
            if episode.version_arn != arn:
                continue
            finish = episode.outcome_at or now
            begin, stop = max(episode.idle_since, start), min(finish, end)
            if stop > begin:
                spent = (stop - begin).total_seconds()
                seconds += spent
                cost += self.prices.hourly(episode.units) * spent / 3600
        return seconds, cost

    # --- what /cxr status can show -------------------------------------------------------
    def meter(self, now: datetime | None = None) -> list[MeterLine]:
        """Every version the guard sees running, from SQLite (no AWS calls)."""
        now = now or self._now()
        lines = []
        for run in self.runs.open_runs():
            watch = self.store.watch(run.version_arn)
            hourly = self.prices.hourly(run.units)
            idle_since = (watch.idle_since if watch else None) or run.started_at
            idle_seconds = max(0.0, (now - idle_since).total_seconds())
            snooze = self.store.snooze(run.version_arn)
            snoozed = snooze.until if snooze and now < snooze.until else None
            lines.append(
                MeterLine(
                    version_name=self._version_name(run.version_arn),
                    units=run.units,
                    hourly=hourly,
                    running_since=run.started_at,
                    run_cost=self.prices.running_cost(run.units, run.started_at, now),
                    last_request=watch.last_request_at if watch else None,
                    idle_seconds=idle_seconds,
                    idle_cost=hourly * idle_seconds / 3600,
                    snoozed_until=snoozed,
                    alerted=self.store.open_episode(run.version_arn) is not None,
                    auto_stop_at=None if snoozed else self._auto_stop_at(idle_since),
                )
            )
        return lines

    # --- helpers -------------------------------------------------------------------------
    def _is_primary(self, arn: str) -> bool:
        primary = getattr(self.router, "primary", None) if self.router else None
        return getattr(primary, "version_arn", None) == arn

    def _version_name(self, arn: str) -> str:
        watch = self.store.watch(arn)
        return watch.version_name if watch else _name_of(arn)

    async def _post(self, notice: Notice, *, thread_ts: str | None = None) -> PostedMessage | None:
        if not self.config.channel:
            log.info("cost_guard.notice", extra={"text": notice.text})
            return None
        try:
            return await self.outbox.post(self.config.channel, notice, thread_ts=thread_ts)
        except Exception as exc:
            log.warning("cost_guard.post_failed", extra={"error": _error(exc)})
            return None

    async def _update(self, episode: Episode, notice: Notice) -> None:
        if not (episode.channel and episode.ts):
            return
        try:
            await self.outbox.update(PostedMessage(episode.channel, episode.ts), notice)
        except Exception as exc:
            log.warning("cost_guard.update_failed", extra={"error": _error(exc)})


def _project(version: ModelVersion) -> str:
    return _project_of(version.arn)


def _project_of(arn: str) -> str:
    parts = arn.split(":", 5)[-1].split("/")
    return parts[1] if len(parts) > 1 and parts[0] == "project" else "custom-labels"


def _name_of(arn: str) -> str:
    parts = arn.split(":", 5)[-1].split("/")
    if len(parts) >= 4 and parts[2] == "version":
        return parts[3]
    return arn.rsplit("/", 1)[-1]


def _is_user(actor: str | None) -> bool:
    return bool(actor) and actor[:1] in ("U", "W") and actor.isalnum()  # type: ignore[index]


def _error(exc: Exception) -> str:
    """A short, loggable description (botocore's ClientError carries the AWS error code)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            message = response.get("Error", {}).get("Message", "")
            return f"{code}: {message}" if message else code
    return f"{type(exc).__name__}: {exc}"[:300]
