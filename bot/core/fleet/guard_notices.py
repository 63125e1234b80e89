"""What the cost guard says in the ops channel. Each notice carries the facts and a plain-text
version of them (`text`, for the shell and for notifications); Slack renders Block Kit from
the facts (`bot.slack.fleet`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from bot.core.fleet.notices import Described, Who, plain
from bot.core.pricing import duration, usd

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


def local_time(moment: datetime | None, zone: str, *, day: bool = False) -> str:
    """ "14:30 CET", or "Mon 5 Jan 14:30 CET" with `day`."""
    if moment is None:
        return "?"
    local = moment.astimezone(ZoneInfo(zone))
    name = local.tzname() or zone
    if day:
        return f"{local:%a} {local.day} {local:%b %H:%M} {name}"
    return f"{local:%H:%M} {name}"


def plural(count: int, noun: str) -> str:
    """ "1 unit", "2 units": a count and its noun."""
    return f"{count} {noun}{'s' if count != 1 else ''}"


def named(actor: str | None, who: Who) -> str:
    """Who acted, as `who` words an ID ("someone" when nobody is known)."""
    return who(actor) if actor else "someone"


def sentence(phrase: str) -> str:
    """A phrase as the start of a sentence: its first letter upper case."""
    return phrase[:1].upper() + phrase[1:]


@dataclass
class VersionNotice(Described):
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

    def sentences(self, auto_stop_at: datetime | None, zone: str) -> list[str]:
        lines = []
        if self.cloudwatch_error:
            lines.append(
                f"I can't read CloudWatch just now ({self.cloudwatch_error}), so requests from "
                "other applications are invisible to me."
            )
        why = {
            "sole-client": " (the bot is this project's only client, so it sees every request)",
            "owned": " (only the bot calls this version, so it sees every request)",
        }.get(self.auto_stop, "")
        if auto_stop_at:
            lines.append(f"Auto-stop at {local_time(auto_stop_at, zone)}{why}.")
        elif self.auto_stop == "not-visible":
            lines.append(
                "I won't stop it automatically: other applications may call this version, and "
                "AWS reports no per-version request count, so I can't tell that nobody uses it "
                "(CXR_SOLE_CLIENT or CXR_OWNED_VERSIONS lets me). Stop it with the button if "
                "it's unused."
            )
        return lines


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
        if self.state == SNOOZED:
            return (STOP,)
        return ()

    def headline(self, who: Who = plain) -> str:
        if self.state in (OPEN, SNOOZED, STOP_FAILED):
            return (
                f"Idle model: {self.version_name} has served no request for "
                f"{duration(self.idle_seconds)} and is still running"
            )
        return f"Idle model {self.version_name}: {self.outcome_line(who)}"

    def facts(self) -> str:
        return (
            f"{plural(self.units, 'inference unit')} at "
            f"{usd(self.hourly)}/h; idle since {local_time(self.idle_since, self.zone, day=True)}, "
            f"{usd(self.idle_cost)} spent idle so far"
        )

    def outcome_line(self, who: Who = plain) -> str:
        at = local_time(self.acted_at, self.zone)
        if self.state == SNOOZED:
            return (
                f"kept running by {named(self.actor, who)} at {at} until "
                f"{local_time(self.snoozed_until, self.zone)}"
            )
        if self.state == STOPPED:
            return f"stopped by {named(self.actor, who)} at {at} after {duration(self.idle_seconds)} idle"
        if self.state == AUTO_STOPPED:
            return f"stopped automatically at {at} after {duration(self.idle_seconds)} idle"
        if self.state == SCHEDULE_STOPPED:
            return f"stopped by the schedule at {at}"
        if self.state == STOPPED_ELSEWHERE:
            return f"stopped outside the bot (seen at {at})"
        if self.state == RESUMED:
            return f"back in use at {at} after {duration(self.idle_seconds)} idle"
        if self.state == STOP_FAILED:
            who_tried = f" by {named(self.actor, who)}" if self.actor else ""
            return f"stop{who_tried} failed at {at}: {self.detail or 'see the logs'}"
        return ""

    def describe(self, who: Who = plain) -> str:
        lines = [self.headline(who) + ".", self.facts() + "."]
        if self.state in (SNOOZED, STOP_FAILED):
            lines.append(sentence(self.outcome_line(who)) + ".")
        elif self.state != OPEN:
            lines.append(f"Idle cost for this episode: {usd(self.idle_cost)}.")
        if self.state in (OPEN, STOP_FAILED):
            lines.extend(self.sight.sentences(self.auto_stop_at, self.zone))
        return " ".join(lines)


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

    def describe(self, who: Who = plain) -> str:
        head = (
            f"The snooze by {named(self.snooze_ended_by, who)} is over and {self.version_name} is "
            if self.snooze_ended_by
            else f"Reminder: {self.version_name} is "
        )
        text = (
            f"{head}still running idle: {duration(self.idle_seconds)} without a request, "
            f"{usd(self.idle_cost)} so far at {usd(self.hourly)}/h."
        )
        seen = self.sight.sentences(self.auto_stop_at, self.zone)
        if seen:
            text += " " + " ".join(seen)
        if self.next_at and not self.auto_stop_at:
            text += f" Next reminder at {local_time(self.next_at, self.zone)}."
        return text + " Use the buttons on the alert above."


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

    def headline(self, who: Who = plain) -> str:
        if self.reason == AUTO_STOPPED:
            return (
                f"Stopped {self.version_name} automatically after "
                f"{duration(self.idle_seconds)} without a request"
            )
        if self.reason == SCHEDULE_STOPPED:
            return f"Stopped {self.version_name}: its scheduled running window is over"
        return f"Stopped {self.version_name} at the request of {named(self.by, who)}"

    def savings(self) -> str:
        text = f"This saves {usd(self.hourly)} for every hour it would have stayed up"
        if self.saved_until_next_window is not None and self.next_window is not None:
            text += (
                f" ({usd(self.saved_until_next_window)} until the next scheduled start, "
                f"{local_time(self.next_window, self.zone, day=True)})"
            )
        else:
            text += f" ({usd(self.hourly * 24)} a day)"
        return text

    def restart_hint(self) -> str:
        return f"Start it again with `/cxr start {self.version_name}` (ready in a few minutes)."

    def describe(self, who: Who = plain) -> str:
        spent = (
            f"It ran {duration(self.run_seconds)} on {plural(self.units, 'unit')} "
            f"({usd(self.run_cost)}), "
            f"{duration(self.idle_seconds)} of it idle ({usd(self.idle_cost)})."
        )
        return f"{self.headline(who)}. {spent} {self.savings()}. {self.restart_hint()}"


@dataclass
class StopFailed(Described):
    """The guard tried to stop a model and AWS said no (reported once per episode)."""

    version_name: str = ""
    reason: str = AUTO_STOPPED
    error: str = ""
    hourly: float = 0.0

    def describe(self, who: Who = plain) -> str:
        return (
            f"I couldn't stop {self.version_name} ({self.error or 'unknown error'}); it still "
            f"costs {usd(self.hourly)}/h. I'll keep trying; an admin may need to stop it in the "
            "Rekognition console."
        )


@dataclass
class ScheduleNotice(VersionNotice):
    """The schedule started a model before its window (stops are `ModelStopped`)."""

    window: str = ""  # e.g. "Mon-Fri 08:00-18:00"
    window_start: datetime | None = None
    window_end: datetime | None = None
    ok: bool = True
    error: str = ""

    def describe(self, who: Who = plain) -> str:
        span = (
            f"{local_time(self.window_start, self.zone)}–{local_time(self.window_end, self.zone)}"
        )
        if not self.ok:
            return (
                f"Scheduled start of {self.version_name} for the {span} window failed: "
                f"{self.error or 'unknown error'}."
            )
        return (
            f"Starting {self.version_name} for its scheduled window ({span}, {self.window}): "
            f"{plural(self.units, 'unit')} at {usd(self.hourly)}/h. "
            "It takes a few minutes to be ready; I'll stop it when the window ends."
        )


@dataclass(frozen=True)
class SpendRow:
    version_name: str
    running_seconds: float
    units: int
    cost: float
    requests: int | None  # all clients (CloudWatch); None when unknown
    images: int  # classified by the bot
    idle_seconds: float = 0.0  # time in idle episodes (alerted ones)
    idle_cost: float = 0.0

    @property
    def hours(self) -> float:
        return self.running_seconds / 3600

    @property
    def cost_per_image(self) -> float | None:
        return self.cost / self.images if self.images else None

    def running_phrase(self) -> str:
        """ "3.1 h on 1 unit": how long and on how many units the version ran."""
        return f"{self.hours:.1f} h on {plural(self.units, 'unit')}"


@dataclass
class SpendSummary(Described):
    """The daily message: what each model cost on one (local) day."""

    day: date | None = None
    rows: list[SpendRow] = field(default_factory=list)
    running_now: list[str] = field(default_factory=list)  # versions still running
    zone: str = "UTC"

    @property
    def total(self) -> float:
        return sum(row.cost for row in self.rows)

    def day_label(self) -> str:
        return f"{self.day:%a} {self.day.day} {self.day:%b %Y}" if self.day else "?"

    @staticmethod
    def row_line(row: SpendRow) -> str:
        requests = "requests unknown" if row.requests is None else f"{row.requests} requests"
        per_image = (
            f"{usd(row.cost_per_image)} per classified image"
            if row.cost_per_image is not None
            else "no images classified by the bot"
        )
        line = (
            f"{row.version_name}: {row.running_phrase()}, {usd(row.cost)}; {requests}, "
            f"{row.images} images classified, {per_image}"
        )
        if row.idle_cost:
            line += f"; {usd(row.idle_cost)} of it in idle alerts"
        return line

    def describe(self, who: Who = plain) -> str:
        head = f"Rekognition spend for {self.day_label()} ({self.zone}): {usd(self.total)}."
        if not self.rows:
            return head + " No model ran."
        body = " ".join(self.row_line(row) + "." for row in self.rows)
        tail = f" Still running: {', '.join(self.running_now)}." if self.running_now else ""
        return f"{head} {body}{tail}"
