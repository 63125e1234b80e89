"""The fleet's nouns and the `Store` port they are kept behind, free of SQL.

Operations in flight, runs (the billing meter), what the guard last saw of each version
(`Watch`), idle episodes, snoozes and the audit log. `Store` bundles one small protocol per
noun; `bot.state.store.SqliteStore` is its one adapter, on SQLite or PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from bot.core.leases import Lease

TRAIN = "train"
START = "start"
STOP = "stop"
# a training's phases (`Operation.phase`), in order; a start or a stop is "requested", then
# "following" (`bot.core.fleet.lifecycle`)
VALIDATING = "validating"
DATASETS = "datasets"
CREATING = "creating"
SPLITTING = "splitting"
TRAINING = "training"


@dataclass(frozen=True)
class Operation:
    """A start, stop or training in flight: claimed before AWS is asked, closed at its end."""

    id: int
    kind: str
    version_name: str
    version_arn: str | None
    channel: str
    user: str
    started_at: datetime
    status: str
    phase: str
    data: dict[str, Any] = field(default_factory=dict)
    finished_at: datetime | None = None
    result: str | None = None


@dataclass(frozen=True)
class Run:
    """A stretch of billed running (`bot.core.fleet.decisions.billed`): the cost meter."""

    id: int
    version_arn: str
    started_at: datetime
    stopped_at: datetime | None
    units: int
    source: str

    def seconds(self, now: datetime) -> float:
        return ((self.stopped_at or now) - self.started_at).total_seconds()


@dataclass(frozen=True)
class Watch:
    """What the guard last saw of a version, and when it last served a request."""

    version_arn: str
    version_name: str
    status: str
    units: int
    last_request_at: datetime | None
    idle_since: datetime | None
    metrics_until: datetime | None
    seen_at: datetime
    stop_requested_at: datetime | None
    stop_requested_by: str | None
    start_requested_at: datetime | None
    stop_failed_at: datetime | None


@dataclass(frozen=True)
class Episode:
    """One idle stretch of one version, and its alert thread."""

    id: int
    version_arn: str
    version_name: str
    idle_since: datetime
    units: int
    opened_at: datetime
    channel: str | None
    ts: str | None
    alerts: int
    last_alert_at: datetime
    next_alert_at: datetime
    gap_minutes: float
    state: str
    outcome: str | None
    outcome_by: str | None
    outcome_at: datetime | None
    note: str | None

    @property
    def open(self) -> bool:
        return self.state == "open"


@dataclass(frozen=True)
class Snooze:
    """An admin's "keep running" on an idle alert: no alerts or auto-stop until `until`."""

    version_arn: str
    until: datetime
    by: str
    at: datetime
    episode_id: int | None
    expired: bool = False  # recorded as over (its reminder said so)


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    target: str
    result: str


# --- the port --------------------------------------------------------------------------------
class Operations(Protocol):
    async def claim(
        self,
        kind: str,
        version_name: str,
        *,
        channel: str,
        user: str,
        at: datetime,
        status: str,
        phase: str,
        version_arn: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> Operation | None: ...
    async def update(
        self,
        op_id: int,
        *,
        status: str | None = None,
        phase: str | None = None,
        version_arn: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> Operation: ...
    async def finish(
        self, op_id: int, at: datetime, result: str, status: str | None = None
    ) -> None: ...
    async def get(self, op_id: int) -> Operation | None: ...
    async def open(self) -> list[Operation]: ...
    async def open_for(self, version_name: str) -> Operation | None: ...
    async def open_training(self) -> Operation | None: ...


class Runs(Protocol):
    async def open_run(
        self, version_arn: str, started_at: datetime, units: int, source: str
    ) -> Run: ...
    async def set_units(self, version_arn: str, units: int) -> None: ...
    async def close_run(self, version_arn: str, stopped_at: datetime) -> Run | None: ...
    async def current(self, version_arn: str) -> Run | None: ...
    async def latest(self, version_arn: str, since: datetime) -> Run | None: ...
    async def open_runs(self) -> list[Run]: ...
    async def overlapping(self, start: datetime, end: datetime) -> list[Run]: ...


class Audit(Protocol):
    async def record(
        self, at: datetime, actor: str, action: str, target: str, result: str
    ) -> None: ...
    async def recent(self, limit: int = 5) -> list[AuditEntry]: ...


class GuardMemory(Protocol):
    """The cost guard's memory: watches, episodes, snoozes, schedule actions, summaries."""

    async def watch(self, version_arn: str) -> Watch | None: ...
    async def save_watch(
        self,
        version_arn: str,
        version_name: str,
        status: str,
        seen_at: datetime,
        *,
        units: int = 1,
        last_request_at: datetime | None = None,
        idle_since: datetime | None = None,
        metrics_until: datetime | None = None,
    ) -> None: ...
    async def update_watch(self, version_arn: str, **changes: Any) -> None: ...
    async def open_episode(self, version_arn: str) -> Episode | None: ...
    async def episode(self, episode_id: int) -> Episode | None: ...
    async def episodes(self) -> list[Episode]: ...
    async def create_episode(self, watch: Watch, now: datetime, gap: timedelta) -> Episode: ...
    async def update_episode(self, episode_id: int, **changes: Any) -> None: ...
    async def close_episode(
        self, episode_id: int, idle_end: datetime, outcome: str, by: str | None = None
    ) -> bool: ...
    async def snooze(self, version_arn: str) -> Snooze | None: ...
    async def set_snooze(self, version_arn: str, snooze: Snooze | None) -> None: ...
    async def schedule_done(self, key: str) -> bool: ...
    async def record_schedule(self, key: str, at: datetime, result: str) -> bool: ...
    async def note_started(self, at: datetime) -> datetime: ...
    async def summary_sent(self, day: date) -> bool: ...
    async def record_summary(
        self, day: date, at: datetime, channel: str | None = None, ts: str | None = None
    ) -> bool: ...


class Leases(Protocol):
    """Leases (`bot.core.leases`; SQLite: `bot.state.leases.LeaseStore`): an operation's
    while its command talks to AWS."""

    async def acquire(
        self, key: str, owner: str, now: datetime, ttl: timedelta
    ) -> Lease | None: ...
    async def release(self, keys: Iterable[str], owner: str) -> None: ...
    async def holder(self, key: str) -> Lease | None: ...


class Store(Protocol):
    """All of the fleet's state, one adapter per database (`bot.state.store.SqliteStore`)."""

    operations: Operations
    runs: Runs
    guard: GuardMemory
    audit: Audit
    leases: Leases
