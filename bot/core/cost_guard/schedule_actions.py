"""The weekday schedule: start the serving version `start_lead` before each window, stop what
ran in the window when it ends (unless an admin kept it running), announce both.

Each action is claimed in SQLite under a key naming its window (`start@…`, `stop@…`) before it
is done, so a restart or a second poll never repeats it; a stop the bot was down for too long
to do on time is recorded as missed and left to the idle alerts. Inside a window the serving
version is meant to run, so the idle rules ask `planned` and leave it alone.
"""

from __future__ import annotations

from datetime import datetime

from bot.core.cost_guard.context import SCHEDULE_ACTOR, GuardContext, log
from bot.core.cost_guard.stopper import StopOrder, Stopper
from bot.core.cost_notices import SCHEDULE_STOPPED, ScheduleNotice
from bot.core.fleet.decisions import ScheduledStop, schedule_start_due, schedule_stop_due
from bot.core.model_versions import RUNNING, STARTING, ModelVersion
from bot.core.schedule import Schedule

STARTABLE = frozenset({"TRAINING_COMPLETED", "STOPPED", "FAILED", "COPYING_COMPLETED"})


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
        if store.schedule_done(key):
            return
        arn = context.serving_version()
        version = next((v for v in versions if v.arn == arn), None)
        if version is None:
            store.record_schedule(key, now, "skipped: no serving version")
            return
        if version.status in (RUNNING, STARTING):
            store.record_schedule(key, now, f"skipped: already {version.status}")
            return
        if occurrence.end - now <= config.start_lead or version.status not in STARTABLE:
            store.record_schedule(key, now, f"skipped: {version.status}, window nearly over")
            return
        if not store.record_schedule(key, now, "requested"):
            return
        units = config.schedule_units
        assert context.stops is not None, "the schedule starts through the fleet's start path"
        error = await context.stops.request_start(
            version, SCHEDULE_ACTOR, config.channel or "", units, "schedule"
        )
        if error is None:
            store.save_watch(version.arn, version.name, STARTING, now, units=units)
            store.mark_start_requested(version.arn, now)
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
        if what is ScheduledStop.NONE or store.schedule_done(key):
            return
        if what is ScheduledStop.MISSED:
            store.record_schedule(key, now, "missed: the bot was not running")
            return
        if what is ScheduledStop.FOLLOWED:
            store.record_schedule(key, now, "skipped: the next window follows")
            return
        if not store.record_schedule(key, now, "done"):
            return
        assert ended_at is not None
        for version in versions:
            run = context.runs.current(version.arn)
            if version.status != RUNNING or run is None or run.started_at >= ended_at:
                continue  # started after the window: idle alerts look after it
            snooze = store.snooze(version.arn)
            if snooze is not None and now < snooze.until:
                context.audit.record(
                    now, SCHEDULE_ACTOR, "stop", version.name, f"skipped: kept by {snooze.by}"
                )
                continue
            order = StopOrder(
                version.arn,
                version.name,
                SCHEDULE_STOPPED,
                SCHEDULE_ACTOR,
                episode=store.open_episode(version.arn),
                watch=store.watch(version.arn),
            )
            await self.stopper.stop(order, now)
