"""The idle rules: when a running version gets an alert, a reminder, or is stopped.

- **Idle** = no request from anyone since max(last request, run start).
- **Episode**: one idle stretch of one version. After `alert_after` idle the guard posts an
  alert (the episode's thread root). Reminders go in that thread, backed off: at 2N, 4N, 8N…
  idle, never more than `max_gap` apart. A request ends the episode (the alert says so); the
  next idle stretch is a new episode and a new thread. A restart reads the episode back and
  does not re-alert.
- **Snooze** (Keep 1 h / 4 h): no reminders and no auto-stop until it expires. If the same
  episode is still idle then, a reminder goes into the same thread and the back-off starts
  again from N.
- **Auto-stop** (off unless `auto_stop_after` is set): after that much idle, stop the version;
  held while CloudWatch can't be read, since somebody else may be using the model.
- Inside a scheduled window the serving version is meant to run: no alert, no auto-stop.
"""

from __future__ import annotations

from datetime import datetime

from bot.core.cost_guard.alerts import EpisodeAlerts
from bot.core.cost_guard.context import ACTOR, GuardContext, log
from bot.core.cost_guard.observer import STOP_GRACE, Observer
from bot.core.cost_guard.schedule_actions import ScheduledActions
from bot.core.cost_guard.stopper import StopOrder, Stopper
from bot.core.cost_notices import AUTO_STOPPED, RESUMED
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
        if watch.stop_requested_at and now - watch.stop_requested_at < STOP_GRACE:
            return  # a stop is on its way (still billed until STOPPED)
        idle_since = watch.idle_since
        idle = now - idle_since
        episode = store.open_episode(version.arn)
        if episode is not None and idle_since > episode.idle_since:
            await self.alerts.close(episode, RESUMED, None, now, idle_end=idle_since)
            episode = None
        if self.schedule.planned(version.arn, now):
            return
        snooze = store.snooze(version.arn)
        if snooze is not None and now < snooze.until:
            return
        reminded = False
        if snooze is not None and not snooze.expired:
            store.mark_snooze_expired(version.arn)
            if episode is not None:
                await self.alerts.remind(episode, watch, now, snooze_ended_by=snooze.by)
                reminded = True
        auto_stop = config.auto_stop_after
        if auto_stop is not None and idle >= auto_stop:
            if not self.observer.usage_readable(version.arn):
                # Other clients' traffic is invisible while CloudWatch can't be read: alert,
                # but don't stop a model somebody may be using.
                log.warning("cost_guard.auto_stop_held", extra={"version": version.name})
            else:
                order = StopOrder(
                    version.arn, version.name, AUTO_STOPPED, ACTOR, episode=episode, watch=watch
                )
                await self.stopper.stop(order, now)
                return
        if idle < config.alert_after or reminded:
            return
        if episode is None:
            await self.alerts.open(version, watch, now)
        elif episode.ts is None and config.channel:
            await self.alerts.post_alert(episode, now)  # its first post failed: not a reminder
        elif now >= episode.next_alert_at:
            await self.alerts.remind(episode, watch, now)
