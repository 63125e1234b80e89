"""The guard's stops (auto-stop, Stop now, the schedule) and the weekday schedule's starts.

Both go through the fleet's one start and one stop path (the lifecycle's operations): claimed,
shown by `/cxr status`, followed by the poller. A stop is confirmed at STOPPED; only then is
it reported with what it cost and saves, and the episode closed; a refused stop is noted on
the alert, one that doesn't take effect (or is slow) is reported. Schedule actions are claimed
under a key naming their window (`start@…`, `stop@…`), so a restart or a second poll never
repeats one; a stop the bot was down too long to do is recorded as missed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.core.fleet.decisions import STARTABLE, ScheduledStop, schedule_start_due, schedule_stop_due
from bot.core.fleet.guard_context import ACTOR, SCHEDULE_ACTOR, EpisodeAlerts, GuardContext, log
from bot.core.fleet.guard_notices import SCHEDULE_STOPPED, ModelStopped, ScheduleNotice, StopFailed
from bot.core.fleet.state import Episode, Operation, Run, Watch
from bot.core.model_versions import RUNNING, STARTING, ModelVersion
from bot.core.pricing import duration
from bot.core.schedule import Schedule


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
