"""The fleet's decisions, as pure functions of (snapshot, stored state, settings, now).

Each returns what to do; the poller's collaborators do it (post, stop, record). The settings
are `GuardConfig`'s. Nothing here reads a clock, a database or AWS, so each rule is tested as a
table of cases (`tests/test_fleet_decisions.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from bot.core import model_versions as mv
from bot.core.schedule import Occurrence, Schedule, wall_time

# A version in one of these can be started (the schedule and /cxr start agree), or stopped.
STARTABLE = frozenset({mv.TRAINING_COMPLETED, mv.STOPPED, mv.FAILED, "COPYING_COMPLETED"})
STOPPABLE = frozenset({mv.RUNNING, mv.STARTING})

# --- idle: alerts, their back-off, snoozes, auto-stop ----------------------------------------


class Idle(Enum):
    RESUMED = "resumed"  # the open episode ended with a request: close it
    EXPIRE_SNOOZE = "expire-snooze"  # the snooze is over: record it
    REMIND_AFTER_SNOOZE = "remind-after-snooze"  # ... and say so in the episode's thread
    AUTO_STOP = "auto-stop"
    OPEN_ALERT = "open-alert"  # a new episode and its alert
    POST_ALERT = "post-alert"  # the episode's first post failed: post it now (not a reminder)
    REMIND = "remind"


@dataclass(frozen=True)
class IdleFacts:
    """One RUNNING version as the guard knows it this tick."""

    idle_since: datetime  # max(run start, last request from anyone the bot can see)
    episode_idle_since: datetime | None = None  # the open episode, if any
    episode_posted: bool = True  # the open episode's alert is in Slack
    next_alert_at: datetime | None = None  # the open episode's next reminder
    planned: bool = False  # inside a scheduled window for the serving version
    snooze_until: datetime | None = None
    snooze_expired: bool = True  # a past snooze already recorded as over
    stop_requested_at: datetime | None = None
    auto_stop_allowed: bool = False  # the bot sees all of this version's traffic


def idle_actions(facts: IdleFacts, config: GuardConfig, now: datetime) -> list[Idle]:
    """What the idle rules do for one RUNNING version at `now`, in order."""
    if facts.stop_requested_at and now - facts.stop_requested_at < STOP_GRACE:
        return []  # a stop is on its way (still billed until STOPPED)
    actions: list[Idle] = []
    episode = facts.episode_idle_since is not None
    if episode and facts.idle_since > facts.episode_idle_since:  # type: ignore[operator]
        actions.append(Idle.RESUMED)
        episode = False
    if facts.planned:
        return actions
    if facts.snooze_until is not None and now < facts.snooze_until:
        return actions
    reminded = False
    if facts.snooze_until is not None and not facts.snooze_expired:
        actions.append(Idle.EXPIRE_SNOOZE)
        if episode:
            actions.append(Idle.REMIND_AFTER_SNOOZE)
            reminded = True
    idle = now - facts.idle_since
    auto = config.auto_stop_after
    if auto is not None and idle >= auto and facts.auto_stop_allowed:
        return [*actions, Idle.AUTO_STOP]
    if idle < config.alert_after or reminded:
        return actions
    if not episode:
        actions.append(Idle.OPEN_ALERT)
    elif not facts.episode_posted and config.channel:
        actions.append(Idle.POST_ALERT)
    elif facts.next_alert_at is not None and now >= facts.next_alert_at:
        actions.append(Idle.REMIND)
    return actions


def next_reminder_gap(
    gap: timedelta, *, after_snooze: bool, alert_after: timedelta, max_gap: timedelta
) -> timedelta:
    """Reminders back off: each waits twice as long as the last (up to `max_gap`); after a
    snooze the back-off starts again from the alert threshold."""
    return alert_after if after_snooze else min(gap * 2, max_gap)


class AutoStop(Enum):
    """Whether auto-stop may act on a version, and why (the alert says which case applies)."""

    OFF = "off"  # not configured
    SOLE_CLIENT = "sole-client"  # CXR_SOLE_CLIENT: the bot is the only client of the project
    OWNED = "owned"  # the version is in CXR_OWNED_VERSIONS: only the bot calls it
    NOT_VISIBLE = "not-visible"  # other clients may call it and their requests can't be seen


AUTO_STOP_ALLOWED = frozenset({AutoStop.SOLE_CLIENT, AutoStop.OWNED})
STOP_GRACE = timedelta(minutes=30)  # a requested stop may take this long to be visible


@dataclass(frozen=True)
class GuardConfig:
    """The cost guard's settings, as its rules read them (`from_settings`: the CXR_ ones)."""

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
        """Auto-stop acts only on versions whose whole traffic the bot can see: AWS documents
        no per-version request metric, so CloudWatch's silence is no proof nobody calls it."""
        if self.auto_stop_after is None:
            return AutoStop.OFF
        if self.sole_client:
            return AutoStop.SOLE_CLIENT
        return AutoStop.OWNED if version_name in self.owned_versions else AutoStop.NOT_VISIBLE

    @property
    def schedule_grace(self) -> timedelta:
        """How late a window's stop may still be done (after that: missed, left to alerts)."""
        return max(timedelta(hours=1), 2 * self.interval)

    def auto_stop_at(self, idle_since: datetime, version_name: str) -> datetime | None:
        """When auto-stop acts on a version idle since `idle_since` (None: it won't: off, or
        the bot can't see all of the version's traffic)."""
        allowed = self.auto_stop_case(version_name) in AUTO_STOP_ALLOWED  # never when off
        return idle_since + self.auto_stop_after if allowed and self.auto_stop_after else None

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


# --- operations in flight: start and stop ----------------------------------------------------


class Step(Enum):
    WAIT = "wait"
    RUNNING = "running"  # a start reached RUNNING
    STOPPED = "stopped"  # a stop reached STOPPED: confirmed
    SLOW = "slow"  # still STOPPING after the slow-stop limit: say so once, keep following
    TOLERATE = "tolerate"  # an unexpected status; DescribeProjectVersions can lag
    FAILED = "failed"  # FAILED (a start), or the unexpected status persisted
    NEVER_SENT = "never-sent"  # unexpected, and the request may never have reached AWS
    GONE = "gone"  # the version no longer exists


UNEXPECTED_READINGS = 3  # polls showing an unexpected status before an operation is failed
SLOW_STOP = timedelta(minutes=30)  # AWS: a stop takes minutes; past this, say so


@dataclass(frozen=True)
class OperationFacts:
    kind: str  # "start" | "stop"
    status: str | None  # the version's status now; None: not in the project any more
    requested: bool  # phase "requested": AWS not known to have accepted
    unexpected_seen: int = 0
    age: timedelta = timedelta(0)
    slow_reported: bool = False


def tolerated(unexpected_seen: int) -> bool:
    """Whether one more unexpected reading is tolerated (DescribeProjectVersions can lag)."""
    return unexpected_seen + 1 < UNEXPECTED_READINGS


def operation_step(facts: OperationFacts) -> Step:
    """The next step of a start or a stop, from what Rekognition says now."""
    status = facts.status
    if status is None:
        return Step.GONE
    if facts.kind == "start":
        if status == mv.STARTING:
            return Step.WAIT
        if status == mv.RUNNING:
            return Step.RUNNING
        if status == mv.FAILED:
            return Step.FAILED
    else:
        if status == mv.STOPPING:
            if facts.age >= SLOW_STOP and not facts.slow_reported:
                return Step.SLOW
            return Step.WAIT
        if status in (mv.STOPPED, mv.TRAINING_COMPLETED):
            return Step.STOPPED
    if tolerated(facts.unexpected_seen):
        return Step.TOLERATE
    return Step.NEVER_SENT if facts.requested else Step.FAILED


# --- billing ---------------------------------------------------------------------------------

BILLED = frozenset({mv.RUNNING, mv.STOPPING})
"""Statuses billed per inference-unit hour. AWS: "charged for the amount of time your model is
running" (customlabels-dg/running-model.html). Whether STOPPING is billed is not documented:
the bot counts it as billed (an estimate, on the side of caution), so a run ends when the
version is first seen STOPPED."""


def billed(status: str) -> bool:
    return status in BILLED


# --- the schedule and the summary ------------------------------------------------------------


def summary_day(
    now: datetime,
    *,
    at: time | None,
    zone: str,
    first_started: datetime | None,
    sent: frozenset[date] = frozenset(),
) -> date | None:
    """The day whose spend summary is due now: yesterday (local), once the summary time has
    passed, unless sent already or the bot wasn't running yet that day (it would not know)."""
    if at is None:
        return None
    local = ZoneInfo(zone)
    today = now.astimezone(local).date()
    if now < wall_time(today, at, local):
        return None
    day = today - timedelta(days=1)
    if day in sent or (first_started and first_started.astimezone(local).date() > day):
        return None
    return day


def schedule_start_due(
    schedule: Schedule, now: datetime, lead: timedelta
) -> tuple[str, Occurrence] | None:
    """The window to start for now (its key and occurrence), when one begins within `lead`."""
    soon = schedule.occurrences(now, now + lead + timedelta(seconds=1))
    due = next((o for o in soon if o.start - lead <= now < o.end), None)
    return (f"start@{due.start.isoformat()}", due) if due else None


class ScheduledStop(Enum):
    NONE = "none"
    MISSED = "missed"  # the bot was down too long: left to the idle alerts
    FOLLOWED = "followed"  # the next window follows: keep it running
    DUE = "due"


def schedule_stop_due(
    schedule: Schedule, now: datetime, *, lead: timedelta, grace: timedelta
) -> tuple[ScheduledStop, str, datetime | None]:
    """Whether a window has just ended and its stop is due: (what, key, the window's end)."""
    ended = schedule.last_end(now)
    if ended is None:
        return ScheduledStop.NONE, "", None
    key = f"stop@{ended.end.isoformat()}"
    if now - ended.end > grace:
        return ScheduledStop.MISSED, key, ended.end
    upcoming = schedule.next_start(now - timedelta(seconds=1))
    if schedule.is_on(now) or (upcoming and upcoming.start - now <= lead):
        return ScheduledStop.FOLLOWED, key, ended.end
    return ScheduledStop.DUE, key, ended.end
