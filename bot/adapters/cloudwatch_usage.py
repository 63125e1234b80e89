"""`UsageSource` on CloudWatch: Rekognition Custom Labels metrics for one model version.

One GetMetricData call reads, at a one-minute period, for `ProjectName` + `VersionName` in
the `AWS/Rekognition` namespace:

- `SuccessfulRequestCount` (Sum): requests served, by any client. AWS documents it per
  operation; whether it is emitted per version is not confirmed, so the cost guard also
  uses the bot's own classifications, and a missing metric simply means "no news".
- `InServiceInferenceUnits` (Average): units in service; its datapoints show when the
  model has been running (the start of a run begun outside the bot, e.g. in the console).

boto3 blocks, so the call runs in a worker thread. Errors and missing metrics are tolerated:
the answer is then `Usage.unknown()` or a Usage with nothing in it, never an exception.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bot.core.errors import AwsFailure
from bot.core.usage import Usage

log = logging.getLogger(__name__)

NAMESPACE = "AWS/Rekognition"
PERIOD = 60  # seconds; one-minute metrics are kept for 15 days
MAX_GAP = timedelta(minutes=5)  # a longer hole in InServiceInferenceUnits means "was stopped"
RECENT = timedelta(minutes=10)  # units seen this close to the end count as "running now"
Series = dict[str, list[tuple[datetime, float]]]  # (time, value) per query id
QUERIES = (  # (the series' name, the metric, its statistic)
    ("requests", "SuccessfulRequestCount", "Sum"),
    ("units", "InServiceInferenceUnits", "Average"),
)


class CloudWatchUsage:
    def __init__(self, client: Any | Callable[[], Any], period: int = PERIOD) -> None:
        """`client` is a boto3 CloudWatch client, or a function returning one (made lazily)."""
        self._client = client
        self.period = period

    @property
    def client(self) -> Any:
        return self._client() if callable(self._client) else self._client

    async def usage(self, project: str, version: str, start: datetime, end: datetime) -> Usage:
        start, end = _floor_minute(start), _ceil_minute(end)
        if end <= start:
            end = start + timedelta(seconds=self.period)
        try:
            series = await asyncio.to_thread(self._read, project, version, start, end)
        except (ClientError, BotoCoreError) as exc:
            failure = AwsFailure.of(exc)
            log.warning(
                "cloudwatch_usage.failed", extra={"version": version, "error": failure.code}
            )
            return Usage.unknown(failure)
        return self._summarise(series, start, end)

    def _read(self, project: str, version: str, start: datetime, end: datetime) -> Series:
        dimensions = [
            {"Name": "ProjectName", "Value": project},
            {"Name": "VersionName", "Value": version},
        ]
        queries = [
            {
                "Id": query_id,
                "MetricStat": {
                    "Metric": {
                        "Namespace": NAMESPACE,
                        "MetricName": metric,
                        "Dimensions": dimensions,
                    },
                    "Period": self.period,
                    "Stat": stat,
                },
                "ReturnData": True,
            }
            for query_id, metric, stat in QUERIES
        ]
        pages = self.client.get_paginator("get_metric_data").paginate(
            MetricDataQueries=queries, StartTime=start, EndTime=end, ScanBy="TimestampDescending"
        )
        series: Series = {"requests": [], "units": []}
        for page in pages:
            for result in page.get("MetricDataResults", []):
                points = zip(result.get("Timestamps", []), result.get("Values", []), strict=False)
                series.setdefault(result["Id"], []).extend(
                    (stamp.astimezone(UTC), float(value)) for stamp, value in points
                )
        return series

    def _summarise(self, series: Series, start: datetime, end: datetime) -> Usage:
        period = timedelta(seconds=self.period)
        served = [(at, value) for at, value in series["requests"] if value > 0]
        # A datapoint covers [at, at + period): the last request was at most then.
        last_request = min(max(at for at, _ in served) + period, end) if served else None
        requests = round(sum(value for _, value in served))
        units_points = sorted(series["units"])
        units = units_points[-1][1] if units_points else None
        return Usage(
            last_request=last_request,
            requests=requests,
            units=units,
            running_since=_running_since(units_points, start, end),
        )


def _running_since(points: list[tuple[datetime, float]], start: datetime, end: datetime):
    """The start of the latest unbroken stretch of in-service units, if it reaches `end`.

    A stretch that begins with the window itself started at or before `start`."""
    in_service = [at for at, value in points if value > 0]
    if not in_service or end - in_service[-1] > RECENT:
        return None
    first = in_service[-1]
    for at in reversed(in_service[:-1]):
        if first - at > MAX_GAP:
            break
        first = at
    return first


def _floor_minute(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def _ceil_minute(moment: datetime) -> datetime:
    floored = _floor_minute(moment)
    return floored if floored == moment else floored + timedelta(minutes=1)
