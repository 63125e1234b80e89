"""The meter `/cxr status` shows: every version the guard sees running, what it has cost so
far, how long it has been idle, and what the guard will do about it next.

Read from SQLite only (the runs and the guard's memory), never from AWS, so a status command
answers at once and shows the same figures the alerts do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.core.cost_guard.context import GuardContext
from bot.core.cost_notices import local_time, plural
from bot.core.pricing import duration, usd


@dataclass(frozen=True)
class MeterLine:
    """One running version as `/cxr status` can show it."""

    version_name: str
    units: int
    hourly: float
    running_since: datetime
    run_cost: float
    last_request: datetime | None
    idle_seconds: float
    idle_cost: float
    snoozed_until: datetime | None
    alerted: bool
    auto_stop_at: datetime | None

    def describe(self, zone: str = "UTC") -> str:
        text = (
            f"{self.version_name}: running {plural(self.units, 'unit')} "
            f"({usd(self.hourly)}/h) since {local_time(self.running_since, zone, day=True)}, "
            f"{usd(self.run_cost)} so far; "
        )
        if self.idle_seconds >= 60:
            text += f"idle {duration(self.idle_seconds)} ({usd(self.idle_cost)})"
        else:
            text += "in use"
        if self.snoozed_until:
            text += f", kept running until {local_time(self.snoozed_until, zone)}"
        elif self.auto_stop_at:
            text += f", auto-stop at {local_time(self.auto_stop_at, zone)}"
        return text


class Meter:
    def __init__(self, context: GuardContext) -> None:
        self.context = context

    def lines(self, now: datetime) -> list[MeterLine]:
        """One line per open run, as of `now`."""
        context = self.context
        store, prices = context.store, context.prices
        lines = []
        for run in context.runs.open_runs():
            watch = store.watch(run.version_arn)
            hourly = prices.hourly(run.units)
            idle_since = (watch.idle_since if watch else None) or run.started_at
            idle_seconds = max(0.0, (now - idle_since).total_seconds())
            snooze = store.snooze(run.version_arn)
            snoozed = snooze.until if snooze and now < snooze.until else None
            lines.append(
                MeterLine(
                    version_name=context.version_name(run.version_arn),
                    units=run.units,
                    hourly=hourly,
                    running_since=run.started_at,
                    run_cost=prices.running_cost(run.units, run.started_at, now),
                    last_request=watch.last_request_at if watch else None,
                    idle_seconds=idle_seconds,
                    idle_cost=hourly * idle_seconds / 3600,
                    snoozed_until=snoozed,
                    alerted=store.open_episode(run.version_arn) is not None,
                    auto_stop_at=None
                    if snoozed
                    else context.config.auto_stop_at(
                        idle_since, context.version_name(run.version_arn)
                    ),
                )
            )
        return lines
