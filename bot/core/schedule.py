"""Running windows for the model: "Mon-Fri 08:00-18:00; Sat 10:00-14:00", in one time zone.

A schedule is one or more windows separated by `;`. Each window is a set of weekdays and a
wall-clock range:

    Mon-Fri 08:00-18:00        weekdays, office hours
    Mon,Wed,Fri 07:30-12:00    a list of days
    Fri 22:00-02:00            crosses midnight: Friday 22:00 to Saturday 02:00
    Daily 06:00-24:00          every day ("Daily", "Every day" or "*")
    Sat 00:00-24:00            the whole of Saturday

The days name the day a window *starts*. Times are wall-clock times in the schedule's zone,
so a window keeps its local hours across daylight-saving changes (and lasts an hour more or
less in real time on the night the clocks change). A local time the clocks skip (02:30 on a
spring-forward night) means the moment the clocks jump past it; a local time that happens
twice (01:30 on a fall-back night) means its first occurrence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EVERY_DAY = ("daily", "every day", "everyday", "*")

_WINDOW = re.compile(
    r"^(?P<days>.+?)\s+(?P<start>\d{1,2}:\d{2})\s*(?:-|–|to)\s*(?P<end>\d{1,2}:\d{2})$",
    re.IGNORECASE,
)


class ScheduleError(ValueError):
    """A schedule that can't be read; the message says which part and why."""


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # weekday numbers (Mon = 0) on which the window starts
    start: time
    end: time | None  # None means 24:00 (the end of the start day)

    @property
    def crosses_midnight(self) -> bool:
        return self.end is not None and self.end <= self.start


@dataclass(frozen=True)
class Occurrence:
    """One concrete run of a window: real instants (UTC), from start up to (not incl.) end."""

    start: datetime
    end: datetime
    window: Window

    def contains(self, at: datetime) -> bool:
        return self.start <= at < self.end


@dataclass(frozen=True)
class Schedule:
    windows: tuple[Window, ...]
    zone: ZoneInfo

    @classmethod
    def parse(cls, text: str, zone: ZoneInfo | str = "UTC") -> Schedule:
        zone = ZoneInfo(zone) if isinstance(zone, str) else zone
        windows = tuple(_parse_window(part.strip()) for part in text.split(";") if part.strip())
        if not windows:
            raise ScheduleError("the schedule is empty; e.g. 'Mon-Fri 08:00-18:00'")
        return cls(windows, zone)

    def occurrences(self, start: datetime, end: datetime) -> list[Occurrence]:
        """Every window occurrence that overlaps [start, end), in order of start."""
        first = start.astimezone(self.zone).date() - timedelta(days=1)
        last = end.astimezone(self.zone).date()
        found: list[Occurrence] = []
        day = first
        while day <= last:
            for window in self.windows:
                if day.weekday() in window.days:
                    occurrence = self._occurrence(day, window)
                    if occurrence.start < end and occurrence.end > start:
                        found.append(occurrence)
            day += timedelta(days=1)
        return sorted(found, key=lambda o: (o.start, o.end))

    def current(self, at: datetime) -> Occurrence | None:
        """The occurrence running at `at` (the one that ends last, if windows overlap)."""
        running = [o for o in self.occurrences(at, at + timedelta(seconds=1)) if o.contains(at)]
        return max(running, key=lambda o: o.end) if running else None

    def is_on(self, at: datetime) -> bool:
        return self.current(at) is not None

    def next_start(self, after: datetime, within_days: int = 8) -> Occurrence | None:
        """The first occurrence that starts after `after` (None if no window in a week)."""
        upcoming = self.occurrences(after, after + timedelta(days=within_days))
        return next((o for o in upcoming if o.start > after), None)

    def last_end(self, at: datetime, within_days: int = 8) -> Occurrence | None:
        """The occurrence that most recently ended at or before `at`."""
        past = self.occurrences(at - timedelta(days=within_days), at + timedelta(seconds=1))
        ended = [o for o in past if o.end <= at]
        return max(ended, key=lambda o: o.end) if ended else None

    def _occurrence(self, day: date, window: Window) -> Occurrence:
        start = wall_time(day, window.start, self.zone)
        if window.end is None:
            end = wall_time(day + timedelta(days=1), time(0, 0), self.zone)
        elif window.crosses_midnight:
            end = wall_time(day + timedelta(days=1), window.end, self.zone)
        else:
            end = wall_time(day, window.end, self.zone)
        return Occurrence(start, end, window)


def wall_time(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The instant (UTC) at which the wall clock in `zone` shows `clock` on `day`.

    Skipped times (in a spring-forward gap) give the instant the clocks jump; repeated
    times (in a fall-back hour) give the first of the two instants.
    """
    naive = datetime.combine(day, clock)
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == naive:
        return first
    # In a gap: fold=1 maps to an instant before the jump, fold=0 to one after it. Local wall
    # time only moves forward across the jump, so bisect for the first instant at or after.
    low = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = first
    if low > high:
        low, high = high, low
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= naive:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def _parse_window(text: str) -> Window:
    match = _WINDOW.match(text)
    if not match:
        raise ScheduleError(
            f"can't read {text!r}: expected days and hours, e.g. 'Mon-Fri 08:00-18:00'"
        )
    days = _parse_days(match["days"].strip(), text)
    start = _parse_time(match["start"], text, allow_24=False)
    end = _parse_time(match["end"], text, allow_24=True)
    if end is not None and end == start:
        raise ScheduleError(f"{text!r}: the window starts and ends at the same time")
    return Window(frozenset(days), start or time(0, 0), end)


def _parse_days(text: str, whole: str) -> set[int]:
    if text.casefold() in EVERY_DAY:
        return set(range(7))
    days: set[int] = set()
    for part in re.split(r"\s*,\s*", text):
        if "-" in part or "–" in part:
            first, _, last = re.split(r"\s*(-|–)\s*", part, maxsplit=1)
            a, b = _day(first, whole), _day(last, whole)
            span = (b - a) % 7
            days.update((a + i) % 7 for i in range(span + 1))
        else:
            days.add(_day(part, whole))
    return days


def _day(text: str, whole: str) -> int:
    key = text.strip().casefold()[:3]
    if key not in DAY_NAMES or len(text.strip()) < 3:
        raise ScheduleError(f"{whole!r}: {text.strip()!r} is not a day (use Mon, Tue, … Sun)")
    return DAY_NAMES.index(key)


def _parse_time(text: str, whole: str, *, allow_24: bool) -> time | None:
    hours, minutes = (int(x) for x in text.split(":"))
    if allow_24 and hours == 24 and minutes == 0:
        return None
    if not (0 <= hours <= 23 and 0 <= minutes <= 59):
        raise ScheduleError(f"{whole!r}: {text} is not a time of day (00:00 to 24:00)")
    return time(hours, minutes)
