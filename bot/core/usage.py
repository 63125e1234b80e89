"""Who used a model version, and when: the idle signal behind alerts and auto-stop.

Two sources feed it. The bot's own classifications (in SQLite) are exact but only cover the
bot's traffic; CloudWatch (`AWS/Rekognition`, ProjectName/VersionName) reports the units in
service, and request counts where it emits them per version (AWS documents request metrics
per operation, so other clients' traffic may simply not be there). The cost guard takes the
latest request either source reports; auto-stop acts only where the bot sees all traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bot.core.errors import AwsFailure


@dataclass(frozen=True)
class Usage:
    """What a source saw for one version over a window [start, end)."""

    last_request: datetime | None = None  # latest moment a request was served, if any
    requests: int | None = 0  # requests served in the window (None: the source can't tell)
    units: float | None = None  # inference units in service at the latest datapoint
    running_since: datetime | None = None  # start of the current stretch of in-service units
    ok: bool = True  # False when the source could not be read (then nothing else is known)
    failure: AwsFailure | None = None  # why it could not be read, when known

    @classmethod
    def unknown(cls, failure: AwsFailure | None = None) -> Usage:
        return cls(requests=None, ok=False, failure=failure)


class UsageSource(Protocol):
    async def usage(self, project: str, version: str, start: datetime, end: datetime) -> Usage:
        """Requests (and in-service units) for `version` of `project` between start and end."""
        ...


class ClassificationLog(Protocol):
    """The bot's own record of classifications (`bot.state.uploads.UploadStore`)."""

    async def last_classified_at(
        self, model_kind: str, model_version: str | None = None
    ) -> datetime | None: ...


class NoUsage:
    """A source that sees nothing: used when CloudWatch is turned off."""

    async def usage(self, project: str, version: str, start: datetime, end: datetime) -> Usage:
        return Usage(requests=None)


class OwnTraffic:
    """The bot's own classifications by a Rekognition version, as a usage source."""

    def __init__(self, log: ClassificationLog, model_kind: str = "rekognition") -> None:
        self.log = log
        self.model_kind = model_kind

    async def usage(self, project: str, version: str, start: datetime, end: datetime) -> Usage:
        last = await self.log.last_classified_at(self.model_kind, version)
        return Usage(last_request=last, requests=None)


def latest(*moments: datetime | None) -> datetime | None:
    """The latest of the moments that are known."""
    known = [m for m in moments if m is not None]
    return max(known) if known else None
