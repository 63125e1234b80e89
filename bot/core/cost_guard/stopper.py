"""Stopping a version for the guard: auto-stop, an admin's Stop button, or the schedule.

All three go through the fleet's one stop path (the lifecycle's stop operation): the request
is claimed as an operation (so `/cxr status` shows it and a second request finds it), the
router is told at once (the local model answers if fallback is on), and the poller confirms
the stop at STOPPED. Only then is the run closed (a STOPPING model is still billed,
`bot.core.fleet.billing`), the stop reported with what it cost and saves, and the episode
closed. A refused stop is noted on the alert; a stop that doesn't take effect is reported;
the guard's own failures are reported once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.core.cost_guard.alerts import EpisodeAlerts
from bot.core.cost_guard.context import ACTOR, SCHEDULE_ACTOR, GuardContext, log
from bot.core.cost_notices import ModelStopped, StopFailed
from bot.core.fleet.state import Episode, Operation, Run, Watch
from bot.core.model_versions import RUNNING, ModelVersion
from bot.core.pricing import duration


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
        context.store.mark_stop_requested(order.arn, now, order.actor)
        context.store.mark_stop_failed(order.arn, None)
        context.store.clear_snooze(order.arn)
        context.tell_router(order.arn, running=False)
        log.warning("cost_guard.stopping", extra={"version": order.name, "reason": order.reason})
        return True, ""

    async def _failed(self, order: StopOrder, now: datetime, error: str) -> None:
        context, episode, watch = self.context, order.episode, order.watch
        log.warning("cost_guard.stop_failed", extra={"version": order.name, "error": error})
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
        episode = self._episode(report)
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
        episode = self._episode(report)
        failed = StopFailed(
            version_name=op.version_name,
            reason=report["reason"],
            error=reason,
            hourly=context.prices.hourly(int(report.get("units") or 1)),
        )
        await context.post(failed, thread_ts=episode.ts if episode else None)

    def _episode(self, report: dict[str, Any]) -> Episode | None:
        episode_id = report.get("episode")
        return self.context.store.episode(int(episode_id)) if episode_id else None
