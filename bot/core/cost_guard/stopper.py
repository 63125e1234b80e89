"""Stopping a version for the guard: auto-stop, an admin's Stop button, or the schedule.

All three stop the same way, so the rules live once: ask `ModelCatalog.stop`, write the audit
log, close the run at once with the stop time (billing ends while the model is STOPPING, and
`/cxr status` should stop the meter when the guard acts), tell the router (so the local model
answers if fallback is on), say what was stopped, what it cost and saves, and close the
episode. A failed stop is noted on the alert, and the guard's own failures are reported once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bot.core.cost_guard.alerts import EpisodeAlerts
from bot.core.cost_guard.context import ACTOR, SCHEDULE_ACTOR, GuardContext, describe_error, log
from bot.core.cost_notices import ModelStopped, StopFailed
from bot.core.pricing import duration

if TYPE_CHECKING:
    from bot.state.cost_guard import Episode, Watch


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
        """Stop a version and report it; (False, the error) when AWS refused."""
        try:
            await self.context.catalog.stop(order.arn)
        except Exception as exc:
            error = describe_error(exc)
            await self._failed(order, now, error)
            return False, error
        await self._stopped(order, now)
        return True, ""

    async def _failed(self, order: StopOrder, now: datetime, error: str) -> None:
        context, episode, watch = self.context, order.episode, order.watch
        log.warning("cost_guard.stop_failed", extra={"version": order.name, "error": error})
        context.audit.record(now, order.actor, "stop", order.name, f"failed: {error}")
        first_failure = watch is None or watch.stop_failed_at is None
        context.store.mark_stop_failed(order.arn, now)
        if episode is not None:
            context.store.set_note(episode.id, error)
            await self.alerts.refresh(episode, now)
        if first_failure and order.actor in (ACTOR, SCHEDULE_ACTOR):
            hourly = context.prices.hourly(watch.units if watch else 1)
            failed = StopFailed(
                version_name=order.name, reason=order.reason, error=error, hourly=hourly
            )
            await context.post(failed, thread_ts=episode.ts if episode else None)

    async def _stopped(self, order: StopOrder, now: datetime) -> None:
        context, episode, watch = self.context, order.episode, order.watch
        idle_since = (watch.idle_since if watch else None) or now
        units = watch.units if watch else 1
        closed = context.runs.close_run(order.arn, now)
        context.store.mark_stop_requested(order.arn, now, order.actor)
        context.store.mark_stop_failed(order.arn, None)
        context.store.clear_snooze(order.arn)
        idle_seconds = (now - idle_since).total_seconds()
        context.audit.record(
            now,
            order.actor,
            "stop",
            order.name,
            f"ok: {order.reason} after {duration(idle_seconds)} idle",
        )
        context.tell_router(order.arn, running=False)
        hourly = context.prices.hourly(units)
        schedule = context.config.schedule
        next_window = schedule.next_start(now) if schedule else None
        notice = ModelStopped(
            version_name=order.name,
            reason=order.reason,
            by=order.actor,
            units=units,
            hourly=hourly,
            idle_seconds=idle_seconds,
            idle_cost=hourly * idle_seconds / 3600,
            run_seconds=closed.seconds(now) if closed else 0.0,
            run_cost=context.prices.running_cost(closed.units, closed.started_at, now)
            if closed
            else 0.0,
            next_window=next_window.start if next_window else None,
            saved_until_next_window=hourly * (next_window.start - now).total_seconds() / 3600
            if next_window
            else None,
            zone=context.config.zone,
        )
        await context.post(notice, thread_ts=episode.ts if episode else None)
        if episode is not None:
            await self.alerts.close(episode, order.reason, order.actor, now, idle_end=now)
        log.warning("cost_guard.stopped", extra={"version": order.name, "reason": order.reason})
