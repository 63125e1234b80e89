"""The daily spend summary: at `summary_time` (local), what each version cost the previous
local day: running hours, requests served, cost, cost per classified image, and how much of it
went on idle episodes. A day on which no model ran gets no message, and neither does a day
before the bot first watched the fleet (it would not know what ran).

Costs come from the runs (the same meter `/cxr status` shows), requests from CloudWatch, and
images from the bot's own classification log; a summary is recorded as sent only once it is
posted, so a Slack outage delays it and a restart does not repeat it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from bot.core.cost_guard.context import GuardContext, log
from bot.core.cost_notices import SpendRow, SpendSummary
from bot.core.fleet.arns import project_name
from bot.core.fleet.decisions import summary_day
from bot.core.schedule import wall_time

REKOGNITION = "rekognition"  # the model kind the bot records for Rekognition's answers


class ClassificationCounts(Protocol):
    """How many images the bot classified (`bot.state.uploads.UploadStore`)."""

    def classified_count(
        self, model_kind: str, since: datetime, until: datetime, model_version: str | None = None
    ) -> int: ...


@dataclass
class _VersionDay:
    """One version's running time and cost inside the summarised day, summed over its runs."""

    seconds: float = 0.0
    cost: float = 0.0
    units: int = 0  # the most units it ran on


class SpendSummaries:
    def __init__(self, context: GuardContext, classifications: ClassificationCounts | None) -> None:
        self.context = context
        self.classifications = classifications
        self.first_started: datetime | None = None  # no summary for a day before this

    async def post_when_due(self, now: datetime) -> None:
        """Post yesterday's summary once the local summary time has passed (once per day)."""
        context = self.context
        if self.first_started is None:
            self.first_started = context.store.note_started(now)
        day = summary_day(
            now,
            at=context.config.summary_time,
            zone=context.config.zone,
            first_started=self.first_started,
        )
        if day is None or context.store.summary_sent(day):
            return
        try:
            summary = await self.summarise(day, now)
            if not summary.rows and not summary.running_now:
                # Nothing ran and nothing runs: no message (a first start, a quiet weekend).
                context.store.record_summary(day, now, None, None)
                return
            posted = await context.post(summary)
        except Exception:
            log.exception("cost_guard.summary_failed")
            return
        if posted is None and context.config.channel:
            return  # try again next tick
        context.store.record_summary(
            day, now, posted.channel if posted else None, posted.ts if posted else None
        )

    async def summarise(self, day: date, now: datetime) -> SpendSummary:
        """What each version cost on one local day (up to `now` if the day isn't over)."""
        context = self.context
        zone = ZoneInfo(context.config.zone)
        start = wall_time(day, time(0, 0), zone)
        end = min(wall_time(day + timedelta(days=1), time(0, 0), zone), now)
        per_version: dict[str, _VersionDay] = {}
        for run in context.runs.overlapping(start, end):
            begin, finish = max(run.started_at, start), min(run.stopped_at or now, end)
            if finish <= begin:
                continue
            entry = per_version.setdefault(run.version_arn, _VersionDay())
            entry.seconds += (finish - begin).total_seconds()
            entry.cost += context.prices.running_cost(run.units, begin, finish)
            entry.units = max(entry.units, run.units)
        rows = []
        for arn, entry in per_version.items():
            name = context.version_name(arn)
            usage = await context.usage.usage(project_name(arn), name, start, end)
            idle_seconds, idle_cost = self._idle_in(arn, start, end, now)
            rows.append(
                SpendRow(
                    version_name=name,
                    running_seconds=entry.seconds,
                    units=entry.units,
                    cost=entry.cost,
                    requests=usage.requests if usage.ok else None,
                    images=self._images(name, start, end),
                    idle_seconds=idle_seconds,
                    idle_cost=idle_cost,
                )
            )
        rows.sort(key=lambda row: -row.cost)
        running = [context.version_name(run.version_arn) for run in context.runs.open_runs()]
        return SpendSummary(
            day=day, rows=rows, running_now=sorted(running), zone=context.config.zone
        )

    def _images(self, version_name: str, start: datetime, end: datetime) -> int:
        """Images the bot classified with this Rekognition version in [start, end)."""
        if self.classifications is None:
            return 0
        return self.classifications.classified_count(
            REKOGNITION, start, end, model_version=version_name
        )

    def _idle_in(
        self, arn: str, start: datetime, end: datetime, now: datetime
    ) -> tuple[float, float]:
        """Seconds and cost of the version's idle episodes inside [start, end)."""
        seconds = cost = 0.0
        for episode in self.context.store.episodes():
            if episode.version_arn != arn:
                continue
            finish = episode.outcome_at or now
            begin, stop = max(episode.idle_since, start), min(finish, end)
            if stop > begin:
                spent = (stop - begin).total_seconds()
                seconds += spent
                cost += self.context.prices.hourly(episode.units) * spent / 3600
        return seconds, cost
