"""Schedules: parsing, windows across midnight, and wall-clock hours across DST changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.core.schedule import Schedule, ScheduleError, wall_time
from bot.settings import SettingsError, load_settings
from bot.slack.fleet import window_phrase

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_office_hours_on_weekdays_only():
    schedule = Schedule.parse("Mon-Fri 08:00-18:00", "UTC")
    assert schedule.is_on(utc(2026, 1, 5, 8, 0))  # Monday 08:00: the window opens
    assert schedule.is_on(utc(2026, 1, 9, 17, 59))  # Friday
    assert not schedule.is_on(utc(2026, 1, 9, 18, 0))  # the end is not inside
    assert not schedule.is_on(utc(2026, 1, 10, 12, 0))  # Saturday
    assert not schedule.is_on(utc(2026, 1, 5, 7, 59))


def test_several_windows_lists_and_whole_days():
    schedule = Schedule.parse("Mon,Wed 07:30-12:00; sat 00:00-24:00 ; Daily 20:00-21:00", "UTC")
    assert len(schedule.windows) == 3
    assert schedule.is_on(utc(2026, 1, 7, 7, 30))  # Wednesday
    assert not schedule.is_on(utc(2026, 1, 6, 7, 30))  # Tuesday
    assert schedule.is_on(utc(2026, 1, 10, 23, 59))  # all of Saturday
    assert not schedule.is_on(utc(2026, 1, 11, 0, 0))
    assert schedule.is_on(utc(2026, 1, 6, 20, 30))  # daily
    windows = [window_phrase(w) for w in schedule.windows]
    assert windows == ["Mon,Wed 07:30-12:00", "Sat 00:00-24:00", "Daily 20:00-21:00"]


def test_a_window_crossing_midnight_belongs_to_the_day_it_starts():
    schedule = Schedule.parse("Fri 22:00-02:00", "UTC")
    assert schedule.is_on(utc(2026, 1, 9, 22, 0))  # Friday night
    assert schedule.is_on(utc(2026, 1, 10, 1, 59))  # Saturday small hours
    assert not schedule.is_on(utc(2026, 1, 10, 2, 0))
    assert not schedule.is_on(utc(2026, 1, 9, 1, 0))  # Friday small hours: Thursday's night
    [occurrence] = schedule.occurrences(utc(2026, 1, 9), utc(2026, 1, 11))
    assert (occurrence.start, occurrence.end) == (utc(2026, 1, 9, 22), utc(2026, 1, 10, 2))


def test_day_ranges_may_wrap_around_the_week():
    schedule = Schedule.parse("Fri-Mon 10:00-11:00", "UTC")
    days = {o.start.weekday() for o in schedule.occurrences(utc(2026, 1, 5), utc(2026, 1, 12))}
    assert days == {4, 5, 6, 0}


def test_office_hours_keep_their_local_time_across_a_spring_forward():
    # US clocks go forward on Sunday 8 March 2026: 08:00 is 13:00 UTC before, 12:00 UTC after.
    schedule = Schedule.parse("Mon-Fri 08:00-18:00", NEW_YORK)
    friday, monday = schedule.occurrences(utc(2026, 3, 6), utc(2026, 3, 10))[:2]
    assert (friday.start, friday.end) == (utc(2026, 3, 6, 13), utc(2026, 3, 6, 23))
    assert (monday.start, monday.end) == (utc(2026, 3, 9, 12), utc(2026, 3, 9, 22))


def test_a_night_window_over_the_spring_forward_is_an_hour_shorter():
    schedule = Schedule.parse("Sat 22:00-06:00", NEW_YORK)
    [night] = schedule.occurrences(utc(2026, 3, 7, 12), utc(2026, 3, 8, 12))
    assert night.start == utc(2026, 3, 8, 3)  # 22:00 EST
    assert night.end == utc(2026, 3, 8, 10)  # 06:00 EDT
    assert night.end - night.start == timedelta(hours=7)
    assert schedule.is_on(utc(2026, 3, 8, 9, 59))
    assert not schedule.is_on(utc(2026, 3, 8, 10, 0))


def test_a_night_window_over_the_fall_back_is_an_hour_longer():
    schedule = Schedule.parse("Sat 22:00-06:00", NEW_YORK)
    [night] = schedule.occurrences(utc(2026, 10, 31, 12), utc(2026, 11, 1, 12))
    assert night.end - night.start == timedelta(hours=9)
    assert night.end == utc(2026, 11, 1, 11)  # 06:00 EST


def test_skipped_and_repeated_local_times():
    # 02:30 never happens on 8 March 2026 in New York: the window starts when clocks jump.
    assert wall_time(date(2026, 3, 8), time(2, 30), NEW_YORK) == utc(2026, 3, 8, 7)
    # 01:30 happens twice on 1 November 2026: the first one (EDT) counts.
    assert wall_time(date(2026, 11, 1), time(1, 30), NEW_YORK) == utc(2026, 11, 1, 5, 30)
    schedule = Schedule.parse("Sun 02:30-04:00", NEW_YORK)
    [short] = schedule.occurrences(utc(2026, 3, 8), utc(2026, 3, 9))
    assert (short.start, short.end) == (utc(2026, 3, 8, 7), utc(2026, 3, 8, 8))


def test_a_window_across_midnight_on_a_european_dst_night():
    # Europe moves its clocks at 01:00 UTC on Sunday 29 March 2026 (02:00 CET -> 03:00 CEST).
    schedule = Schedule.parse("Sat 23:00-03:30", BERLIN)
    [night] = schedule.occurrences(utc(2026, 3, 28), utc(2026, 3, 30))
    assert night.start == utc(2026, 3, 28, 22)  # 23:00 CET
    assert night.end == utc(2026, 3, 29, 1, 30)  # 03:30 CEST
    assert night.end - night.start == timedelta(hours=3, minutes=30)


def test_next_start_and_last_end():
    schedule = Schedule.parse("Mon-Fri 08:00-18:00", "UTC")
    friday_evening = utc(2026, 1, 9, 19)
    assert schedule.next_start(friday_evening).start == utc(2026, 1, 12, 8)
    assert schedule.last_end(friday_evening).end == utc(2026, 1, 9, 18)
    assert schedule.current(utc(2026, 1, 12, 9)).end == utc(2026, 1, 12, 18)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("weekdays 08:00-18:00", "'weekdays' is not a day"),
        ("Mon-Fri 08:00", "expected days and hours"),
        ("Mon 25:00-26:00", "not a time of day"),
        ("Mon 09:00-09:00", "starts and ends at the same time"),
    ],
)
def test_bad_schedules_say_what_is_wrong(text, message):
    with pytest.raises(ScheduleError, match=message):
        Schedule.parse(text, "UTC")


def test_a_bad_schedule_stops_the_bot_at_start_with_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CXR_SCHEDULE", "Mon-Fri 8-18")
    with pytest.raises(SettingsError, match="CXR_SCHEDULE: can't read 'Mon-Fri 8-18'"):
        load_settings()
    monkeypatch.setenv("CXR_SCHEDULE", "Mon-Fri 08:00-18:00")
    assert load_settings().cxr_schedule == "Mon-Fri 08:00-18:00"
