"""How the cost guard is tuned: poll interval, alert and auto-stop thresholds, the schedule,
the summary time. Kept apart from the guard so that settings, tests and the month simulation
build the same frozen value, and every rule reads its thresholds from one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from bot.core.fleet.decisions import AutoStop, auto_stop_case
from bot.core.schedule import Schedule


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
