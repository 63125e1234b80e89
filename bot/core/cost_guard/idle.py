"""The idle rules (decided by `bot.core.fleet.decisions.idle_actions`, done here): when a running version gets an alert, a reminder, or is stopped.

- **Idle** = no request from anyone since max(last request, run start).
- **Episode**: one idle stretch of one version. After `alert_after` idle the guard posts an
  alert (the episode's thread root). Reminders go in that thread, backed off: at 2N, 4N, 8N…
  idle, never more than `max_gap` apart. A request ends the episode (the alert says so); the
  next idle stretch is a new episode and a new thread. A restart reads the episode back and
  does not re-alert.
- **Snooze** (Keep 1 h / 4 h): no reminders and no auto-stop until it expires. If the same
  episode is still idle then, a reminder goes into the same thread and the back-off starts
  again from N.
- **Auto-stop** (off unless `auto_stop_after` is set): after that much idle, stop the version,
  but only one whose whole traffic the bot sees (`CXR_SOLE_CLIENT`, `CXR_OWNED_VERSIONS`):
  AWS documents no per-version request metric, so CloudWatch's silence proves nothing.
- Inside a scheduled window the serving version is meant to run: no alert, no auto-stop.
"""

from __future__ import annotations

from datetime import datetime

from bot.core.cost_guard.alerts import EpisodeAlerts
from bot.core.cost_guard.context import ACTOR, GuardContext
from bot.core.cost_guard.observer import STOP_GRACE, Observer
from bot.core.cost_guard.schedule_actions import ScheduledActions
from bot.core.cost_guard.stopper import StopOrder, Stopper
from bot.core.cost_notices import AUTO_STOPPED, RESUMED
from bot.core.fleet.decisions import AUTO_STOP_ALLOWED, Idle, IdleFacts, IdleSettings, idle_actions
from bot.core.model_versions import ModelVersion


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
        watch = store.watch(version.arn)
        run = context.runs.current(version.arn)
        if watch is None or run is None or watch.idle_since is None:
            return  # not metered
        episode = store.open_episode(version.arn)
        snooze = store.snooze(version.arn)
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
                store.mark_snooze_expired(version.arn)
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
