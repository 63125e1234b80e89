"""The cost guard: runs (billing), idle episodes and their alerts, auto-stop, the weekday
schedule, the daily spend summary, the idle alert's buttons and the `/cxr status` meter.

`CostGuard.review` takes each poll's versions (after the operations, under one lock, so a press
never acts on a half-judged poll). A run opens when a version is first seen RUNNING (back-dated
to when CloudWatch says its units came into service) and closes when it is seen neither RUNNING
nor STOPPING; the latest request the bot can see starts idle time, and `decisions.idle_actions`
rules on each idle stretch (an episode: one alert thread). Stops and scheduled starts go through
the fleet's one stop and one start path (the lifecycle's operations); a stop is reported once
confirmed at STOPPED. Schedule actions are claimed under a key naming their window, so a restart
never repeats one. The meter and the summary read the store only, so they show the figures the
alerts do; a summary is recorded once posted, never for a day before the bot first watched.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from bot.core.errors import AwsFailure
from bot.core.fleet import decisions as d
from bot.core.fleet import notices as g
from bot.core.fleet.arns import project_name, version_name
from bot.core.fleet.decisions import GuardConfig
from bot.core.fleet.state import Episode, Operation, Run, Snooze, Store, Watch
from bot.core.leadership import FencedOutbox, Leadership
from bot.core.model_versions import (
    RUNNING,
    STARTING,
    STOPPING,
    ModelCatalog,
    ModelVersion,
    find_version,
)
from bot.core.ports import Notice, Outbox, PostedMessage
from bot.core.pricing import Prices, duration
from bot.core.schedule import Schedule, wall_time
from bot.core.usage import Usage, UsageSource, latest

if TYPE_CHECKING:
    from bot.core.clock import Clock
    from bot.core.fleet.lifecycle import Lifecycle


log = logging.getLogger(__package__)  # the fleet logs as "bot.core.fleet"

# Who the guard acts as in the audit log (an admin's button acts as the admin's user ID).
ACTOR = "cost-guard"
SCHEDULE_ACTOR = "schedule"
WATCHER = "watcher"  # sightings in the audit log
REKOGNITION = "rekognition"  # the model kind the bot records for Rekognition's answers
METRICS_OVERLAP = timedelta(minutes=10)  # CloudWatch datapoints can arrive a few minutes late
METRICS_LOOKBACK = timedelta(hours=24)  # how far back to look for a run begun elsewhere


class ClassificationCounts(Protocol):
    """How many images the bot classified (`bot.state.uploads.UploadStore`)."""

    async def classified_count(
        self, model_kind: str, since: datetime, until: datetime, model_version: str | None = None
    ) -> int: ...


@dataclass(frozen=True)
class MeterLine:
    """One running version as `/cxr status` can show it."""

    version_name: str
    units: int
    hourly: float
    running_since: datetime
    run_cost: float
    idle_seconds: float
    idle_cost: float
    snoozed_until: datetime | None
    alerted: bool
    auto_stop_at: datetime | None


@dataclass(frozen=True)
class PressResult:
    """What a press on an idle alert did, as facts for the presser (`bot.slack.fleet` words
    them); `reason` says why it did nothing: unknown-alert, handled, stopping, already,
    stop-failed, unreachable or unknown-action."""

    ok: bool
    reason: str = ""
    version_name: str = ""
    status: str = ""  # handled: how the alert ended; already: the version's status
    by: str | None = None  # handled: the admin who handled it, if one did
    error: str = ""  # unknown-action: the action
    failure: AwsFailure | None = None  # unreachable: why the versions couldn't be read
    refused: g.Refusal | None = None  # stop-failed: why the stop wasn't asked for


def _noted(refused: g.Refusal) -> str:
    """An episode's note: why its stop wasn't asked for, as facts (JSON) its alert words."""
    if isinstance(refused, g.RequestFailed):
        return json.dumps({"aws": asdict(refused.failure)})
    return json.dumps({"busy": refused.version_name, "kind": getattr(refused, "kind", "")})


def _refusal(note: str) -> g.Refusal:
    """An episode's note read back (one written before notes were facts: its own words)."""
    try:
        facts = json.loads(note)
    except ValueError:
        facts = None
    if not isinstance(facts, dict):
        return g.RequestFailed(failure=AwsFailure("said", message=note))
    if "aws" in facts:
        return g.RequestFailed(failure=AwsFailure(**facts["aws"]))
    if facts.get("kind"):  # the operation that holds the version
        return g.Busy(version_name=facts["busy"], kind=facts["kind"])
    return g.Refused(reason="busy", version_name=facts.get("busy", ""))


def _pending(watch: Watch) -> bool:
    """Anything a sighting of the version stopped still has to clear."""
    return bool(watch.idle_since or watch.stop_requested_at or watch.stop_failed_at)


async def _always(key: str) -> bool:
    return True  # one instance alone: nothing to fence


def _is_user(actor: str | None) -> bool:
    return bool(actor) and actor[:1] in ("U", "W") and actor.isalnum()  # type: ignore[index]


class CostGuard:
    """Watches what the fleet runs and costs; the poll calls `review`, an admin `press`."""

    def __init__(
        self,
        *,
        catalog: ModelCatalog,
        usage: UsageSource,
        own: UsageSource,
        store: Store,
        prices: Prices,
        outbox: Outbox,
        clock: Clock,
        config: GuardConfig,
        lifecycle: Lifecycle,
        serving_version: Callable[[], str | None] | None = None,
        classifications: ClassificationCounts | None = None,
    ) -> None:
        self.catalog, self.prices, self.clock, self.config = catalog, prices, clock, config
        self.usage = usage  # CloudWatch: every client's requests and the units in service
        self.own = own  # the bot's own classifications
        self.store, self.runs, self.audit = store.guard, store.runs, store.audit
        self.classifications = classifications
        self.serving_version = serving_version or (lambda: None)  # what the bot classifies with
        self.lifecycle = lifecycle  # the fleet's one start and one stop path (its operations)
        # A press acts for the admin who pressed, on whichever replica Slack's request reaches:
        # it writes through `outbox`. The poll posts through `fenced` and records its alerts
        # and stops with `act_once` first (both fence once the guard leads: `lead_with`).
        self.outbox: Outbox = outbox
        self.fenced: Outbox = outbox
        self.act_once: Callable[[str], Awaitable[bool]] = _always
        self.usage_errors: dict[str, AwsFailure] = {}  # CloudWatch's, at a version's last read
        self.first_started: datetime | None = None  # no summary for a day before this
        self.lock = asyncio.Lock()
        self.ticks = 0  # completed reviews (tests watch it move)

    def lead_with(self, leadership: Leadership) -> None:
        """Replicas on one database: the poll's alerts and stops are recorded under the
        leader's term first (`act_once`), and its posts check the term (`FencedOutbox`), so a
        leader paused past its term wakes up unable to alert, post or stop."""
        self.fenced = FencedOutbox(self.outbox, leadership)
        self.act_once = leadership.act_once

    # --- the poll ------------------------------------------------------------------------
    async def review(self, versions: list[ModelVersion] | None, now: datetime) -> None:
        """Observe every version, apply the schedule, judge idleness, summarise (the caller
        holds `lock`)."""
        now = now.astimezone(UTC)
        if versions is not None:
            await self.observe(versions, now)
            await self.apply_schedule(versions, now)
            for version in versions:
                if version.status == RUNNING:
                    await self.judge(version, now)
        await self.post_summary(now)
        self.ticks += 1

    async def settle(self) -> None:
        """Wait for a poll or press in progress to finish (tests driving a fake clock)."""
        async with self.lock:
            pass

    async def _name(self, arn: str) -> str:
        watch = await self.store.watch(arn)
        return watch.version_name if watch else version_name(arn)

    async def _post(self, notice: Notice, *, thread_ts: str | None = None) -> PostedMessage | None:
        """Post in the ops channel (fenced); None when there is none (logged) or Slack failed."""
        if not self.config.channel:
            facts = {"notice": type(notice).__name__, "facts": vars(notice)}
            log.info("cost_guard.notice", extra=facts)
            return None
        try:
            return await self.fenced.post(self.config.channel, notice, thread_ts=thread_ts)
        except Exception as exc:
            log.warning("cost_guard.post_failed", extra={"error": type(exc).__name__})
            return None

    async def _update(self, episode: Episode, notice: Notice, *, fenced: bool) -> None:
        """Rewrite an episode's alert in place (nothing to do while it has no message)."""
        if not (episode.channel and episode.ts):
            return
        try:
            outbox = self.fenced if fenced else self.outbox
            await outbox.update(PostedMessage(episode.channel, episode.ts), notice)
        except Exception as exc:
            log.warning("cost_guard.update_failed", extra={"error": type(exc).__name__})

    # --- runs: versions seen running and stopped -----------------------------------------
    async def observe(self, versions: list[ModelVersion], now: datetime) -> None:
        """Open and close runs as versions are seen running or stopped."""
        listed = {v.arn for v in versions}
        for version in versions:
            try:
                if version.status == RUNNING:
                    await self._seen_running(version, now)
                elif not d.billed(version.status):  # STOPPING is billed: the run goes on
                    await self._seen_stopped(version, now)
            except Exception:
                log.exception("cost_guard.observe_failed", extra={"version": version.name})
        if versions:  # a version that vanished (deleted) is not running any more
            for run in await self.runs.open_runs():
                if run.version_arn not in listed:
                    await self.runs.close_run(run.version_arn, now)

    async def _seen_running(self, version: ModelVersion, now: datetime) -> None:
        store, runs = self.store, self.runs
        watch = await store.watch(version.arn)
        if watch and watch.stop_requested_at and now - watch.stop_requested_at < d.STOP_GRACE:
            return  # we asked for a stop; DescribeProjectVersions hasn't caught up yet
        run = await runs.current(version.arn)
        # While an operation is open the poller ticks every few seconds; CloudWatch is read at
        # most about twice per guard interval all the same (GetMetricData is billed, and
        # throttled). In between: no news from it.
        read_at = watch.metrics_until if watch else None
        fresh = run is not None and read_at is not None and now - read_at < self.config.interval / 2
        since = (read_at or run.started_at) if run else None  # the last read, or the run's start
        usage = Usage(requests=None) if fresh else await self._read_usage(version, since, now)
        project = project_name(version.arn)
        own = await self.own.usage(project, version.name, now - METRICS_LOOKBACK, now)
        units = max(1, round(usage.units)) if usage.units else max(1, version.min_units or 1)
        if run is None:
            asked = watch.stop_requested_at if watch else None  # a stop that never happened
            source = "schedule" if watch and watch.start_requested_at and not asked else "observed"
            started = min(asked or usage.running_since or now, now)
            run = await runs.open_run(version.arn, started, units, source)
            await store.update_watch(
                version.arn, start_requested_at=None, stop_requested_at=None, stop_requested_by=None
            )
            await self.audit.record(
                now, WATCHER, "observed:running", version.name, f"ok: {units} units ({source})"
            )
            opened = {"version": version.name, "since": run.started_at.isoformat()}
            log.info("cost_guard.run_opened", extra=opened)
            self.lifecycle.serving.set_running(version.arn, True)
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
        self, version: ModelVersion, since: datetime | None, now: datetime
    ) -> Usage:
        """CloudWatch from `since` (with overlap), or a day back for a new sighting; why it
        couldn't be read is kept for the alerts."""
        start = now - METRICS_LOOKBACK
        if since is not None:
            start = max(start, since - METRICS_OVERLAP)
        try:
            usage = await self.usage.usage(project_name(version.arn), version.name, start, now)
        except Exception as exc:  # a source must not stop the guard
            usage = Usage.unknown(AwsFailure.of(exc))
            log.warning("cost_guard.usage_failed", extra={"error": type(exc).__name__})
        if usage.ok:
            self.usage_errors.pop(version.arn, None)
        else:  # an empty failure: the source gave no answer
            self.usage_errors[version.arn] = usage.failure or AwsFailure()
        return usage

    async def _seen_stopped(
        self, version: ModelVersion, now: datetime, *, fenced: bool = True
    ) -> None:
        """A version seen not running: close its run and its episode, forget its stop and
        snooze (a button's Stop also lands here when the console was quicker)."""
        store = self.store
        watch = await store.watch(version.arn)
        if await self.runs.current(version.arn) is not None:
            await self.runs.close_run(version.arn, now)
            await self.audit.record(now, WATCHER, "observed:stopped", version.name, version.status)
            self.lifecycle.serving.set_running(version.arn, False)
        episode = await store.open_episode(version.arn)
        if episode is not None:
            await self._close(episode, g.STOPPED_ELSEWHERE, None, now, idle_end=now, fenced=fenced)
        if watch is None and version.status != STARTING:
            return  # never ran while we watched: nothing to remember
        if watch and watch.status == version.status and not _pending(watch):
            return  # recorded when first seen so: no write at every poll
        units = watch.units if watch else 1
        await store.save_watch(version.arn, version.name, version.status, now, units=units)
        if watch and (watch.stop_requested_at or watch.stop_failed_at):
            await store.update_watch(
                version.arn, stop_requested_at=None, stop_requested_by=None, stop_failed_at=None
            )
        await store.set_snooze(version.arn, None)

    # --- idle versions and their alerts --------------------------------------------------
    async def judge(self, version: ModelVersion, now: datetime) -> None:
        """Apply the idle rules to one RUNNING version after it has been observed this tick."""
        store, config = self.store, self.config
        watch = await store.watch(version.arn)
        run = await self.runs.current(version.arn)
        if watch is None or run is None or watch.idle_since is None:
            return  # not metered
        episode = await store.open_episode(version.arn)
        snooze = await store.snooze(version.arn)
        facts = d.IdleFacts(
            idle_since=watch.idle_since,
            episode_idle_since=episode.idle_since if episode else None,
            episode_posted=bool(episode and episode.ts),
            next_alert_at=episode.next_alert_at if episode else None,
            planned=self._planned(version.arn, now),
            snooze_until=snooze.until if snooze else None,
            snooze_expired=snooze.expired if snooze else True,
            stop_requested_at=watch.stop_requested_at,
            auto_stop_allowed=config.auto_stop_case(version.name) in d.AUTO_STOP_ALLOWED,
        )
        for action in d.idle_actions(facts, config, now):
            if action is d.Idle.RESUMED and episode is not None:
                await self._close(episode, g.RESUMED, None, now, idle_end=watch.idle_since)
                episode = None
            elif action is d.Idle.EXPIRE_SNOOZE and snooze is not None:
                await store.set_snooze(version.arn, replace(snooze, expired=True))
            elif action is d.Idle.REMIND_AFTER_SNOOZE and episode is not None and snooze:
                await self._remind(episode, watch, now, snooze_ended_by=snooze.by)
            elif action is d.Idle.AUTO_STOP:
                await self.stop(version, g.AUTO_STOPPED, ACTOR, now)
            elif action is d.Idle.OPEN_ALERT:
                await self.open_alert(version, watch, now)
            elif action is d.Idle.POST_ALERT and episode is not None:
                await self._post_alert(episode, now)
            elif action is d.Idle.REMIND and episode is not None:
                await self._remind(episode, watch, now)

    async def open_alert(self, version: ModelVersion, watch: Watch, now: datetime) -> None:
        """Start an episode for a version idle past the threshold, and post its alert."""
        assert watch.idle_since is not None
        if not await self.act_once(f"alert:{version.arn}:{watch.idle_since.isoformat()}"):
            return  # another leader alerted on this idle stretch, or we lead no more
        episode = await self.store.create_episode(watch, now, self.config.alert_after)
        minutes = round((now - watch.idle_since).total_seconds() / 60)
        log.warning("cost_guard.idle", extra={"version": version.name, "idle_minutes": minutes})
        await self._post_alert(episode, now)

    async def _post_alert(self, episode: Episode, now: datetime) -> None:
        """Post an episode's alert (its thread root), unless Slack can't be reached now.

        The episode is recorded first (the buttons carry its id) and its message after; an
        episode left without a message by a failed post or a crash is posted on a later tick.
        """
        if not self.config.channel:
            return
        posted = await self._post(await self._alert(episode, now, episode.units))
        if posted is not None:
            await self.store.update_episode(episode.id, channel=posted.channel, ts=posted.ts)

    async def _remind(
        self, episode: Episode, watch: Watch, now: datetime, *, snooze_ended_by: str | None = None
    ) -> None:
        """A reminder in the episode's thread; the next one waits twice as long (up to the cap),
        or the threshold again after a snooze."""
        config = self.config
        gap = d.next_reminder_gap(
            timedelta(minutes=episode.gap_minutes),
            after_snooze=bool(snooze_ended_by),
            alert_after=config.alert_after,
            max_gap=config.max_gap,
        )
        notice = g.IdleFollowUp(
            **self._about(episode.version_name, watch.units),
            idle_seconds=(now - episode.idle_since).total_seconds(),
            idle_cost=self.prices.running_cost(watch.units, episode.idle_since, now),
            next_at=now + gap,
            snooze_ended_by=snooze_ended_by,
            auto_stop_at=config.auto_stop_at(episode.idle_since, episode.version_name),
            sight=self._sight(episode.version_arn, episode.version_name),
        )
        if episode.ts and await self._post(notice, thread_ts=episode.ts) is None:
            return  # try again next tick
        await self.store.update_episode(
            episode.id,
            alerts=episode.alerts + 1,
            last_alert_at=now,
            next_alert_at=now + gap,
            gap_minutes=gap.total_seconds() / 60,
        )
        await self._refresh(episode, now)

    async def _close(
        self,
        episode: Episode,
        outcome: str,
        by: str | None,
        now: datetime,
        *,
        idle_end: datetime,
        fenced: bool = True,
    ) -> None:
        """End an episode (traffic, a stop) and show its outcome on the alert."""
        if not await self.store.close_episode(episode.id, idle_end, outcome, by):
            return
        alert = await self._alert(episode, idle_end, episode.units, outcome, actor=by, acted_at=now)
        await self._update(episode, alert, fenced=fenced)

    async def _refresh(self, episode: Episode, now: datetime, *, fenced: bool = True) -> None:
        """Re-render an open episode's alert with the current figures and state."""
        fresh = await self.store.episode(episode.id) or episode
        watch = await self.store.watch(episode.version_arn)
        snooze = await self.store.snooze(episode.version_arn)
        units = watch.units if watch else fresh.units
        if snooze is not None and now < snooze.until:
            kept = {"actor": snooze.by, "acted_at": snooze.at, "snoozed_until": snooze.until}
            alert = await self._alert(fresh, now, units, g.SNOOZED, **kept)
        elif fresh.note and watch and watch.stop_failed_at:
            failed = {"acted_at": watch.stop_failed_at, "refused": _refusal(fresh.note)}
            alert = await self._alert(fresh, now, units, g.STOP_FAILED, **failed)
        else:
            alert = await self._alert(fresh, now, units)
        await self._update(fresh, alert, fenced=fenced)

    def _about(self, name: str, units: int) -> dict[str, Any]:
        """The facts every notice about one version carries (`g.PricedNotice`), priced."""
        hourly = self.prices.hourly(units)
        return {"version_name": name, "units": units, "hourly": hourly, "zone": self.config.zone}

    def _sight(self, version_arn: str, version_name: str) -> g.Sight:
        """What the guard can see of the version's traffic, and so what auto-stop will do."""
        return g.Sight(
            auto_stop=self.config.auto_stop_case(version_name).value,
            cloudwatch_failure=self.usage_errors.get(version_arn),
        )

    async def _alert(
        self, episode: Episode, now: datetime, units: int, state: str = g.OPEN, **acted: Any
    ) -> g.IdleAlert:
        """The episode's alert as of `now`, with its figures; `acted`: who acted, when, why."""
        config, prices, name = self.config, self.prices, episode.version_name
        return g.IdleAlert(
            **self._about(name, units),
            episode_id=episode.id,
            idle_since=episode.idle_since,
            idle_seconds=max(0.0, (now - episode.idle_since).total_seconds()),
            idle_cost=prices.running_cost(units, episode.idle_since, now),
            threshold_minutes=config.alert_after.total_seconds() / 60,
            auto_stop_at=config.auto_stop_at(episode.idle_since, name) if state == g.OPEN else None,
            sight=self._sight(episode.version_arn, name),
            state=state,
            **acted,
        )

    # --- stops ---------------------------------------------------------------------------
    async def stop(
        self, version: ModelVersion, reason: str, actor: str, now: datetime, *, fenced: bool = True
    ) -> g.Refusal | None:
        """Ask for the stop (`reason`: the alert's outcome state); None when it is under way,
        else why not. The poll's stops are `fenced`; an admin's press is not."""
        store = self.store
        watch, episode = await store.watch(version.arn), await store.open_episode(version.arn)
        idle_since = (watch.idle_since if watch else None) or now
        idle_seconds = (now - idle_since).total_seconds()
        failed_at = watch.stop_failed_at if watch else None
        retry = f":retry:{failed_at.isoformat()}" if failed_at else ""
        key = f"stop:{version.arn}:{idle_since.isoformat()}{retry}"
        if fenced and not await self.act_once(key):  # another leader acted, or we lead no more
            return g.Refused(reason="busy", version_name=version.name)
        report = {
            "reason": reason,
            "episode": episode.id if episode else None,
            "units": watch.units if watch else 1,
            "idle_seconds": idle_seconds,
            "requested_at": now.isoformat(),
            "result": f"ok: {reason} after {duration(idle_seconds)} idle",
        }
        refused = await self.lifecycle.request_stop(
            version, actor, self.config.channel or "", report
        )
        if refused is not None:
            note = _noted(refused)
            log.warning("cost_guard.stop_failed", extra={"version": version.name, "error": note})
            await store.update_watch(version.arn, stop_failed_at=now)
            if episode is not None:
                await store.update_episode(episode.id, note=note)
                await self._refresh(episode, now, fenced=fenced)
            if failed_at is None and actor in (ACTOR, SCHEDULE_ACTOR):  # said once per episode
                about = self._about(version.name, watch.units if watch else 1)
                failed = g.StopFailed(**about, refused=refused)
                await self._post(failed, thread_ts=episode.ts if episode else None)
            return refused
        await store.update_watch(
            version.arn, stop_requested_at=now, stop_requested_by=actor, stop_failed_at=None
        )
        await store.set_snooze(version.arn, None)
        self.lifecycle.serving.set_running(version.arn, False)
        log.warning("cost_guard.stopping", extra={"version": version.name, "reason": reason})
        return None

    async def stopped(self, op: Operation, run: Run | None, now: datetime) -> None:
        """The lifecycle confirmed the stop (STOPPED): report what ran, what it cost and saves."""
        report, prices, schedule = op.data["report"], self.prices, self.config.schedule
        requested_at = datetime.fromisoformat(report["requested_at"])
        units, idle_seconds = int(report.get("units") or 1), float(report.get("idle_seconds") or 0)
        upcoming = schedule.next_start(now) if schedule else None
        end = run.stopped_at if run and run.stopped_at else now
        notice = g.GuardStopped(
            **self._about(op.version_name, units),
            reason=report["reason"],
            by=op.user,
            idle_seconds=idle_seconds,
            idle_cost=prices.hourly(units) * idle_seconds / 3600,
            run_seconds=run.seconds(end) if run else 0.0,
            run_cost=prices.running_cost(run.units, run.started_at, end) if run else 0.0,
            next_window=upcoming.start if upcoming else None,
            saved_until_next_window=prices.running_cost(units, now, upcoming.start)
            if upcoming
            else None,
        )
        episode = await self._reported(report)
        await self._post(notice, thread_ts=episode.ts if episode else None)
        if episode is not None:
            await self._close(episode, notice.reason, op.user, requested_at, idle_end=requested_at)
        log.warning("cost_guard.stopped", extra={"version": op.version_name})

    async def not_stopped(self, op: Operation, failure: g.OperationFailed) -> None:
        """The stop didn't take effect (or is slow): say so where the stop would be reported."""
        report = op.data["report"]
        episode = await self._reported(report)
        about = self._about(op.version_name, int(report.get("units") or 1))
        failed = g.StopFailed(**about, failure=failure)
        await self._post(failed, thread_ts=episode.ts if episode else None)

    async def _reported(self, report: dict[str, Any]) -> Episode | None:
        """The episode a stop's report names, if any."""
        episode_id = report.get("episode")
        return await self.store.episode(int(episode_id)) if episode_id else None

    # --- the schedule --------------------------------------------------------------------
    def _planned(self, arn: str, now: datetime) -> bool:
        """Inside a window the serving version is meant to run: no idle alerts for it."""
        schedule = self.config.schedule
        return schedule is not None and arn == self.serving_version() and schedule.is_on(now)

    async def apply_schedule(self, versions: list[ModelVersion], now: datetime) -> None:
        schedule = self.config.schedule
        if schedule is None:
            return
        try:
            await self._start_window(schedule, versions, now)
            await self._end_window(schedule, versions, now)
        except Exception:
            log.exception("cost_guard.schedule_failed")

    async def _start_window(
        self, schedule: Schedule, versions: list[ModelVersion], now: datetime
    ) -> None:
        """Start the serving version for a window that begins within the lead time."""
        store, config = self.store, self.config
        due = d.schedule_start_due(schedule, now, config.start_lead)
        if due is None:
            return
        key, occurrence = due
        if await store.schedule_done(key):
            return
        arn = self.serving_version()
        version = find_version(versions, arn)
        if version is None:
            await store.record_schedule(key, now, "skipped: no serving version")
            return
        if version.status in (RUNNING, STARTING):
            await store.record_schedule(key, now, f"skipped: already {version.status}")
            return
        if occurrence.end - now <= config.start_lead or version.status not in d.STARTABLE:
            await store.record_schedule(key, now, f"skipped: {version.status}, window nearly over")
            return
        if not await self.act_once(f"schedule:{key}"):
            return  # fenced: another leader, or we lead no more
        if not await store.record_schedule(key, now, "requested"):
            return
        units, channel = config.schedule_units, config.channel or ""
        refused = await self.lifecycle.request_start(
            version, SCHEDULE_ACTOR, channel, units, "schedule"
        )
        if refused is None:
            await store.save_watch(version.arn, version.name, STARTING, now, units=units)
            await store.update_watch(version.arn, start_requested_at=now)
        notice = g.ScheduleNotice(
            **self._about(version.name, units),
            window=occurrence.window,
            window_start=occurrence.start,
            window_end=occurrence.end,
            refused=refused,
        )
        await self._post(notice)

    async def _end_window(
        self, schedule: Schedule, versions: list[ModelVersion], now: datetime
    ) -> None:
        """Stop what ran in a window that has just ended (unless the next one follows)."""
        store, config = self.store, self.config
        what, key, ended_at = d.schedule_stop_due(
            schedule, now, lead=config.start_lead, grace=config.schedule_grace
        )
        if what is d.ScheduledStop.NONE or await store.schedule_done(key):
            return
        if what is d.ScheduledStop.MISSED:
            await store.record_schedule(key, now, "missed: the bot was not running")
            return
        if what is d.ScheduledStop.FOLLOWED:
            await store.record_schedule(key, now, "skipped: the next window follows")
            return
        if not await store.record_schedule(key, now, "done"):
            return
        assert ended_at is not None
        for version in versions:
            run = await self.runs.current(version.arn)
            if version.status != RUNNING or run is None or run.started_at >= ended_at:
                continue  # started after the window: idle alerts look after it
            snooze = await store.snooze(version.arn)
            if snooze is not None and now < snooze.until:
                kept = f"skipped: kept by {snooze.by}"
                await self.audit.record(now, SCHEDULE_ACTOR, "stop", version.name, kept)
                continue
            await self.stop(version, g.SCHEDULE_STOPPED, SCHEDULE_ACTOR, now)

    # --- the daily spend summary ---------------------------------------------------------
    async def post_summary(self, now: datetime) -> None:
        """Post yesterday's summary once the local summary time has passed (once per day)."""
        store, config = self.store, self.config
        if self.first_started is None:
            self.first_started = await store.note_started(now)
        day = d.summary_day(
            now, at=config.summary_time, zone=config.zone, first_started=self.first_started
        )
        if day is None or await store.summary_sent(day):
            return
        try:
            summary = await self.spend_summary(day, now)
            # Nothing ran and nothing runs: no message (a first start, a quiet weekend).
            quiet = not summary.rows and not summary.running_now
            posted = None if quiet else await self._post(summary)
        except Exception:
            log.exception("cost_guard.summary_failed")
            return
        if posted is None and config.channel and not quiet:
            return  # try again next tick
        await store.record_summary(day, now, *((posted.channel, posted.ts) if posted else ()))

    async def spend_summary(self, day: date, now: datetime | None = None) -> g.SpendSummary:
        """What each version cost on one local day (up to `now` if the day isn't over)."""
        now = now or self.clock.now().astimezone(UTC)
        zone = ZoneInfo(self.config.zone)
        start = wall_time(day, time(0, 0), zone)
        end = min(wall_time(day + timedelta(days=1), time(0, 0), zone), now)
        rows: dict[str, g.SpendRow] = {}
        for run in await self.runs.overlapping(start, end):
            begin, finish = max(run.started_at, start), min(run.stopped_at or now, end)
            if finish > begin:
                row = rows.get(run.version_arn) or g.SpendRow(await self._name(run.version_arn))
                row.running_seconds += (finish - begin).total_seconds()
                row.cost += self.prices.running_cost(run.units, begin, finish)
                row.units = max(row.units, run.units)
                rows[run.version_arn] = row
        for episode in await self.store.episodes():  # its idle stretches (the alerted ones)
            begin, finish = max(episode.idle_since, start), min(episode.outcome_at or now, end)
            if episode.version_arn in rows and finish > begin:
                row, spent = rows[episode.version_arn], (finish - begin).total_seconds()
                row.idle_seconds += spent
                row.idle_cost += self.prices.hourly(episode.units) * spent / 3600
        for arn, row in rows.items():
            usage = await self.usage.usage(project_name(arn), row.version_name, start, end)
            row.requests = usage.requests if usage.ok else None
            if self.classifications is not None:  # images it classified with the version
                row.images = await self.classifications.classified_count(
                    REKOGNITION, start, end, model_version=row.version_name
                )
        running = sorted([await self._name(run.version_arn) for run in await self.runs.open_runs()])
        summary = sorted(rows.values(), key=lambda row: -row.cost)
        return g.SpendSummary(day=day, rows=summary, running_now=running, zone=self.config.zone)

    # --- the /cxr status meter -----------------------------------------------------------
    async def meter(self, now: datetime | None = None) -> list[MeterLine]:
        """Every version the guard sees running, one line per open run, from the store (no AWS
        calls)."""
        now = now or self.clock.now().astimezone(UTC)
        store, prices = self.store, self.prices
        lines = []
        for run in await self.runs.open_runs():
            watch = await store.watch(run.version_arn)
            name = watch.version_name if watch else version_name(run.version_arn)
            hourly = prices.hourly(run.units)
            idle_since = (watch.idle_since if watch else None) or run.started_at
            idle_seconds = max(0.0, (now - idle_since).total_seconds())
            snooze = await store.snooze(run.version_arn)
            snoozed = snooze.until if snooze and now < snooze.until else None
            lines.append(
                MeterLine(
                    version_name=name,
                    units=run.units,
                    hourly=hourly,
                    running_since=run.started_at,
                    run_cost=prices.running_cost(run.units, run.started_at, now),
                    idle_seconds=idle_seconds,
                    idle_cost=hourly * idle_seconds / 3600,
                    snoozed_until=snoozed,
                    alerted=await store.open_episode(run.version_arn) is not None,
                    auto_stop_at=None if snoozed else self.config.auto_stop_at(idle_since, name),
                )
            )
        return lines

    # --- the idle alert's buttons --------------------------------------------------------
    async def press(self, episode_id: int, action: str, user: str) -> PressResult:
        """An admin pressed Stop now / Keep 1 h / Keep 4 h on an idle alert. It acts for the
        admin on whichever replica Slack's request reached: unfenced."""
        async with self.lock:
            now = self.clock.now().astimezone(UTC)
            episode = await self.store.episode(episode_id)
            if episode is None:
                return PressResult(False, "unknown-alert")
            if not episode.open:
                by = episode.outcome_by if _is_user(episode.outcome_by) else None
                outcome = episode.outcome or ""
                return PressResult(False, "handled", episode.version_name, outcome, by)
            if action == g.STOP:
                return await self._press_stop(episode, user, now)
            if action not in g.KEEP_HOURS:
                return PressResult(False, "unknown-action", error=action)
            until = now + timedelta(hours=g.KEEP_HOURS[action])
            snooze = Snooze(episode.version_arn, until, user, now, episode.id)
            await self.store.set_snooze(episode.version_arn, snooze)
            await self.store.update_episode(episode.id, note=None)
            result = f"ok: until {until.isoformat()}"
            await self.audit.record(now, user, "snooze", episode.version_name, result)
            await self._refresh(episode, now, fenced=False)
            return PressResult(True)

    async def _press_stop(self, episode: Episode, user: str, now: datetime) -> PressResult:
        name = episode.version_name
        try:
            versions = await self.catalog.versions()
        except Exception as exc:
            return PressResult(False, "unreachable", name, failure=AwsFailure.of(exc))
        version = find_version(versions, episode.version_arn)
        if version is not None and version.status == STOPPING:
            return PressResult(False, "stopping", name)
        if version is None or version.status != RUNNING:
            if version is not None:  # closes the run and the episode
                await self._seen_stopped(version, now, fenced=False)
            await self._close(episode, g.STOPPED_ELSEWHERE, None, now, idle_end=now, fenced=False)
            status = version.status.lower() if version else "gone"
            return PressResult(False, "already", name, status)
        refused = await self.stop(version, g.STOPPED, user, now, fenced=False)
        if refused is not None:
            return PressResult(False, "stop-failed", name, refused=refused)
        return PressResult(True)

    async def record_refusal(
        self, episode_id: int, action: str, user: str, reason: str = "not an admin"
    ) -> None:
        """A non-admin pressed a button: audited, nothing else changes."""
        now = self.clock.now().astimezone(UTC)
        episode = await self.store.episode(episode_id)
        target = episode.version_name if episode else f"episode {episode_id}"
        await self.audit.record(now, user, f"refused:{action}", target, f"refused: {reason}")
