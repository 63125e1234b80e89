"""What a model costs: estimates from the configured prices (AWS's public list prices)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Prices:
    inference_unit_hour: float = 4.00  # USD per inference-unit hour while RUNNING
    training_hour: float = 1.00  # USD per billable training hour

    def hourly(self, units: int) -> float:
        return self.inference_unit_hour * units

    def running_cost(self, units: int, start: datetime, end: datetime) -> float:
        hours = max(0.0, (end - start).total_seconds() / 3600)
        return self.hourly(units) * hours

    def training_cost(self, billable_seconds: int) -> float:
        return self.training_hour * billable_seconds / 3600


def usd(amount: float) -> str:
    """ "$4.00", "$1,234.50": money as people read it (always an estimate)."""
    return f"${amount:,.2f}"


def duration(seconds: float) -> str:
    """ "3 h 05 min", "12 min", "2 d 4 h": how long something ran."""
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min"
