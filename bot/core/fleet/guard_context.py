"""What the cost guard's parts share: `GuardConfig` (thresholds, schedule, summary time),
`GuardContext` (dependencies, posting to the ops channel, telling the router) and
`EpisodeAlerts` (an episode's alert, its reminders, the alert rewritten in place).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from bot.core.fleet.arns import version_name
from bot.core.fleet.context import aws_error
from bot.core.fleet.decisions import AutoStop, auto_stop_case, next_reminder_gap
from bot.core.fleet.guard_notices import OPEN, SNOOZED, STOP_FAILED, IdleAlert, IdleFollowUp, Sight
from bot.core.fleet.state import Audit, Episode, GuardMemory, Runs, Watch
from bot.core.model_versions import ModelCatalog, ModelVersion
from bot.core.ports import Notice, Outbox, PostedMessage
from bot.core.pricing import Prices
from bot.core.schedule import Schedule
from bot.core.usage import UsageSource


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


if TYPE_CHECKING:
    from bot.core.clock import Clock
    from bot.core.routing import ModelRouter

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
            log.info("cost_guard.notice", extra={"text": notice.text})
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
