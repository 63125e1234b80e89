"""What the cost guard tells the ops channel, as facts; `bot.slack.fleet` words every kind."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from bot.core.ports import Notice
from bot.core.schedule import Window

# Actions on an idle alert (Slack action_ids use these names).
STOP = "stop"
KEEP_1H = "keep_1h"
KEEP_4H = "keep_4h"
KEEP_HOURS = {KEEP_1H: 1, KEEP_4H: 4}

# States of an idle alert (the episode's thread root).
OPEN = "open"
SNOOZED = "snoozed"
STOPPED = "stopped"  # by an admin's button
AUTO_STOPPED = "auto-stopped"
SCHEDULE_STOPPED = "schedule-stopped"
STOPPED_ELSEWHERE = "stopped-elsewhere"  # console, CLI, /cxr stop
RESUMED = "resumed"  # traffic came back
STOP_FAILED = "stop-failed"


@dataclass
class VersionNotice(Notice):
    """The facts every notice about one model version carries."""

    version_name: str = ""
    units: int = 1
    hourly: float = 0.0  # USD per hour at these units
    zone: str = "UTC"  # the zone times are shown in


@dataclass(frozen=True)
class Sight:
    """What the guard can see of a version's traffic, and so what auto-stop will do."""

    auto_stop: str = "off"  # an `AutoStop` value: off | sole-client | owned | not-visible
    cloudwatch_error: str = ""  # why CloudWatch couldn't be read just now ("" if it was)


@dataclass
class IdleAlert(VersionNotice):
    """The first message of an idle episode (its thread root), updated in place."""

    episode_id: int = 0
    idle_since: datetime | None = None
    idle_seconds: float = 0.0
    idle_cost: float = 0.0
    running_since: datetime | None = None
    run_cost: float = 0.0
    threshold_minutes: float = 30.0
    auto_stop_at: datetime | None = None  # when auto-stop will act (None: off or snoozed)
    state: str = OPEN
    actor: str | None = None  # who pressed the last button / what stopped it
    acted_at: datetime | None = None
    snoozed_until: datetime | None = None
    detail: str = ""  # e.g. why a stop failed
    sight: Sight = field(default_factory=Sight)

    @property
    def actions(self) -> tuple[str, ...]:
        """The buttons this alert still offers."""
        if self.state in (OPEN, STOP_FAILED):
            return (STOP, KEEP_1H, KEEP_4H)
        return (STOP,) if self.state == SNOOZED else ()


@dataclass
class IdleFollowUp(VersionNotice):
    """A reminder in the episode's thread (backed off: each one waits longer)."""

    idle_seconds: float = 0.0
    idle_cost: float = 0.0
    reminder: int = 1  # 1 for the first follow-up
    next_at: datetime | None = None
    snooze_ended_by: str | None = None  # set when this follows an expired snooze
    auto_stop_at: datetime | None = None
    sight: Sight = field(default_factory=Sight)


@dataclass
class ModelStopped(VersionNotice):
    """The cost guard stopped a model (auto-stop, an admin's button, or the schedule)."""

    reason: str = AUTO_STOPPED  # AUTO_STOPPED | STOPPED | SCHEDULE_STOPPED
    by: str | None = None
    idle_seconds: float = 0.0
    idle_cost: float = 0.0
    run_seconds: float = 0.0
    run_cost: float = 0.0
    next_window: datetime | None = None  # the schedule's next start, when there is one
    saved_until_next_window: float | None = None


@dataclass
class StopFailed(VersionNotice):
    """The guard tried to stop a model and AWS said no (reported once per episode)."""

    reason: str = AUTO_STOPPED
    error: str = ""


@dataclass
class ScheduleNotice(VersionNotice):
    """The schedule started a model before its window (stops are `ModelStopped`)."""

    window: Window | None = None  # its days and hours
    window_start: datetime | None = None  # this run of it
    window_end: datetime | None = None
    ok: bool = True
    error: str = ""


@dataclass
class SpendRow:
    """One version's day: summed over its runs and idle episodes as the guard reads them."""

    version_name: str
    running_seconds: float = 0.0
    units: int = 0  # the most units it ran on
    cost: float = 0.0
    requests: int | None = None  # all clients (CloudWatch); None when unknown
    images: int = 0  # classified by the bot
    idle_seconds: float = 0.0  # time in idle episodes (alerted ones)
    idle_cost: float = 0.0

    @property
    def hours(self) -> float:
        return self.running_seconds / 3600

    @property
    def cost_per_image(self) -> float | None:
        return self.cost / self.images if self.images else None


@dataclass
class SpendSummary(Notice):
    """The daily message: what each model cost on one (local) day."""

    day: date | None = None
    rows: list[SpendRow] = field(default_factory=list)
    running_now: list[str] = field(default_factory=list)  # versions still running
    zone: str = "UTC"

    @property
    def total(self) -> float:
        return sum(row.cost for row in self.rows)
