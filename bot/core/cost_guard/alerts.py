"""An idle episode's messages: the alert (the thread root), its reminders, and the alert
rewritten in place whenever the episode's state changes.

Deciding *when* to alert or remind is `idle.py`'s job; this module only words and posts, so
the idle rules, the stopper and the buttons all show an episode the same way.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.core.cost_guard.context import GuardContext, log
from bot.core.cost_notices import (
    OPEN,
    SNOOZED,
    STOP_FAILED,
    IdleAlert,
    IdleFollowUp,
    Sight,
)
from bot.core.fleet.decisions import next_reminder_gap
from bot.core.fleet.state import Episode, Watch
from bot.core.model_versions import ModelVersion


class EpisodeAlerts:
    def __init__(self, context: GuardContext) -> None:
        self.context = context

    async def open(self, version: ModelVersion, watch: Watch, now: datetime) -> None:
        """Start an episode for a version idle past the threshold, and post its alert."""
        assert watch.idle_since is not None
        config = self.context.config
        gap = config.alert_after
        episode = self.context.store.create_episode(
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
        posted = await self.context.post(self._alert(episode, now))
        if posted is None:
            return False
        self.context.store.set_message(episode.id, posted.channel, posted.ts)
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
        self.context.store.record_follow_up(episode.id, now, now + gap, gap.total_seconds() / 60)
        await self.refresh(episode, now)

    async def close(
        self, episode: Episode, outcome: str, by: str | None, now: datetime, *, idle_end: datetime
    ) -> None:
        """End an episode (traffic, a stop) and show its outcome on the alert."""
        if not self.context.store.close_episode(episode.id, idle_end, outcome, by):
            return
        alert = self._alert(episode, idle_end, state=outcome, actor=by, acted_at=now)
        await self.context.update(episode, alert)

    async def refresh(self, episode: Episode, now: datetime) -> None:
        """Re-render an open episode's alert with the current figures and state."""
        store = self.context.store
        fresh = store.episode(episode.id) or episode
        watch = store.watch(episode.version_arn)
        snooze = store.snooze(episode.version_arn)
        state, actor, acted_at, until, detail = OPEN, None, None, None, ""
        if snooze is not None and now < snooze.until:
            state, actor, acted_at, until = SNOOZED, snooze.by, snooze.at, snooze.until
        elif fresh.note and watch and watch.stop_failed_at:
            state, actor, acted_at, detail = STOP_FAILED, None, watch.stop_failed_at, fresh.note
        alert = self._alert(
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

    def _alert(
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
        run = context.runs.current(episode.version_arn)
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
