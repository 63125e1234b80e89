"""What runs since when, and the idle rules (`decisions.idle_actions` decides, this acts).

`Observer`: every poll, every version of the project, including ones started outside the bot.
A run opens when a version is first seen RUNNING (back-dated to when CloudWatch says its units
came into service) and closes when it is seen neither RUNNING nor STOPPING. The latest request
the bot can see (its own classifications, and any CloudWatch reports) sets where idle time
starts, kept in the watch so a restart reads it back.

`IdleRules`: an idle stretch is an episode with one alert thread; reminders back off (2N, 4N…
up to `max_gap`); a snooze holds reminders and auto-stop; auto-stop acts only on versions
whose whole traffic the bot sees (`CXR_SOLE_CLIENT`, `CXR_OWNED_VERSIONS`), since AWS
documents no per-version request metric; inside a scheduled window the serving version is
left alone.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.core.fleet.arns import project_name
from bot.core.fleet.context import aws_error
from bot.core.fleet.decisions import (
    AUTO_STOP_ALLOWED,
    Idle,
    IdleFacts,
    IdleSettings,
    billed,
    idle_actions,
)
from bot.core.fleet.guard_context import ACTOR, EpisodeAlerts, GuardContext, log
from bot.core.fleet.guard_notices import AUTO_STOPPED, RESUMED, STOPPED_ELSEWHERE
from bot.core.fleet.state import Run, Watch
from bot.core.fleet.stops import ScheduledActions, StopOrder, Stopper
from bot.core.model_versions import RUNNING, STARTING, ModelVersion
from bot.core.usage import Usage, latest

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
