"""The fleet's `Store` port (`bot.core.fleet.state`) on SQLite: operations in flight, runs (the
billing meter), the cost guard's memory and the audit log, beside the uploads and leases.

Every call is async and runs on the database's own thread (`Database.run`), one short
statement or transaction each, so a locked or slow database never stalls the event loop. The
same SQL serves PostgreSQL through `bot.state.postgres.database` (translated). One operation
is open per version (a unique index): a second claim finds the first. A run opens when a
version is seen RUNNING and closes when it is seen stopped. The guard's memory (sightings,
idle episodes, snoozes, schedule actions, summaries) is what lets a restart neither forget
an alert nor repeat one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import fields
from datetime import date, datetime
from typing import Any, TypeVar

from bot.core.fleet.state import AuditEntry, Episode, Operation, Run, Snooze, Watch
from bot.state.db import Database
from bot.state.leases import LeaseStore, in_transaction
from bot.state.uploads import UploadStore

T = TypeVar("T")
OPERATION = "SELECT * FROM lifecycle_operations WHERE id = ?"
OPEN_RUN = "SELECT * FROM model_runs WHERE version_arn = ? AND stopped_at IS NULL"
EPISODE = "SELECT * FROM cost_episodes WHERE id = ?"
FIRST_STARTED = "SELECT value FROM fleet_facts WHERE key = 'first_started'"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _read(noun: type[T], row: Any) -> T:
    """A noun from its row, column by field name: ISO text to datetimes, JSON to dicts."""
    values = {}
    for f in fields(noun):  # type: ignore[arg-type]
        value, kind = row[f.name], str(f.type)
        if "datetime" in kind and value:
            value = datetime.fromisoformat(value)
        elif kind.startswith("dict"):
            value = json.loads(value or "{}")
        elif kind == "bool":
            value = bool(value)
        values[f.name] = value
    return noun(**values)


def _one(c: sqlite3.Connection, noun: type[T], sql: str, params: tuple = ()) -> T | None:
    row = c.execute(sql, params).fetchone()
    return _read(noun, row) if row else None


class _Table:
    """Statements on the database thread: `_write` (the row count), `_get`, `_all`, `_atomic`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def _write(self, sql: str, params: tuple = ()) -> int:
        return await self._db.run(lambda c: c.execute(sql, params).rowcount)

    async def _get(self, noun: type[T], sql: str, params: tuple = ()) -> T | None:
        return await self._db.run(lambda c: _one(c, noun, sql, params))

    async def _all(self, noun: type[T], sql: str, params: tuple = ()) -> list[T]:
        rows = await self._db.run(lambda c: c.execute(sql, params).fetchall())
        return [_read(noun, row) for row in rows]

    async def _atomic(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._db.run(lambda c: in_transaction(c, lambda: work(c)))


class OperationStore(_Table):
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
    ) -> Operation | None:
        """Open an operation; None when one is already open for the version (or a training)."""
        values = (kind, version_name, version_arn, channel, user, at.isoformat(), status, phase)

        def work(c: sqlite3.Connection) -> Operation | None:
            try:
                cursor = c.execute(
                    "INSERT INTO lifecycle_operations (kind, version_name, version_arn, channel,"
                    " user, started_at, status, phase, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*values, json.dumps(data or {})),
                )
            except sqlite3.IntegrityError:
                return None
            return _one(c, Operation, OPERATION, (int(cursor.lastrowid or 0),))

        return await self._db.run(work)

    async def update(
        self,
        op_id: int,
        *,
        status: str | None = None,
        phase: str | None = None,
        version_arn: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> Operation:
        """Change some fields; `data` is merged into the stored data."""

        def work(c: sqlite3.Connection) -> Operation:
            now = _one(c, Operation, OPERATION, (op_id,))
            assert now is not None
            c.execute(
                "UPDATE lifecycle_operations SET status = ?, phase = ?, version_arn = ?, data = ?"
                " WHERE id = ?",
                (
                    status or now.status,
                    phase or now.phase,
                    version_arn or now.version_arn,
                    json.dumps({**now.data, **(data or {})}),
                    op_id,
                ),
            )
            return _one(c, Operation, OPERATION, (op_id,))  # type: ignore[return-value]

        return await self._atomic(work)

    async def finish(
        self, op_id: int, at: datetime, result: str, status: str | None = None
    ) -> None:
        await self._write(
            "UPDATE lifecycle_operations SET finished_at = ?, result = ?,"
            " status = COALESCE(?, status) WHERE id = ? AND finished_at IS NULL",
            (at.isoformat(), result, status, op_id),
        )

    async def get(self, op_id: int) -> Operation | None:
        return await self._get(Operation, OPERATION, (op_id,))

    async def open(self) -> list[Operation]:
        return await self._all(
            Operation, "SELECT * FROM lifecycle_operations WHERE finished_at IS NULL ORDER BY id"
        )

    async def open_for(self, version_name: str) -> Operation | None:
        return await self._get(
            Operation,
            "SELECT * FROM lifecycle_operations WHERE finished_at IS NULL AND version_name = ?",
            (version_name,),
        )

    async def open_training(self) -> Operation | None:
        return await self._get(
            Operation,
            "SELECT * FROM lifecycle_operations WHERE finished_at IS NULL AND kind = 'train'",
        )

    async def recent(self, limit: int = 10) -> list[Operation]:
        return await self._all(
            Operation, "SELECT * FROM lifecycle_operations ORDER BY id DESC LIMIT ?", (limit,)
        )


class RunStore(_Table):
    async def open_run(
        self, version_arn: str, started_at: datetime, units: int, source: str
    ) -> Run:
        """Start the meter for a version, unless a run is already open (then return that)."""

        def work(c: sqlite3.Connection) -> Run:
            c.execute(
                "INSERT OR IGNORE INTO model_runs (version_arn, started_at, units, source)"
                " VALUES (?, ?, ?, ?)",
                (version_arn, started_at.isoformat(), units, source),
            )
            return _one(c, Run, OPEN_RUN, (version_arn,))  # type: ignore[return-value]

        return await self._atomic(work)

    async def set_units(self, version_arn: str, units: int) -> None:
        await self._write(
            "UPDATE model_runs SET units = ? WHERE version_arn = ? AND stopped_at IS NULL",
            (units, version_arn),
        )

    async def close_run(self, version_arn: str, stopped_at: datetime) -> Run | None:
        def work(c: sqlite3.Connection) -> Run | None:
            run = _one(c, Run, OPEN_RUN, (version_arn,))
            if run is None:
                return None
            c.execute(
                "UPDATE model_runs SET stopped_at = ? WHERE id = ?",
                (stopped_at.isoformat(), run.id),
            )
            return _one(c, Run, "SELECT * FROM model_runs WHERE id = ?", (run.id,))

        return await self._atomic(work)

    async def current(self, version_arn: str) -> Run | None:
        return await self._get(Run, OPEN_RUN, (version_arn,))

    async def latest(self, version_arn: str, since: datetime) -> Run | None:
        """The version's last run if it ended at or after `since` (a stop confirmed late)."""
        return await self._get(
            Run,
            "SELECT * FROM model_runs WHERE version_arn = ? AND stopped_at >= ?"
            " ORDER BY stopped_at DESC LIMIT 1",
            (version_arn, since.isoformat()),
        )

    async def open_runs(self) -> list[Run]:
        return await self._all(Run, "SELECT * FROM model_runs WHERE stopped_at IS NULL")

    async def overlapping(self, start: datetime, end: datetime) -> list[Run]:
        """Runs that were on at any moment in [start, end) (for daily summaries)."""
        return await self._all(
            Run,
            "SELECT * FROM model_runs WHERE started_at < ? AND (stopped_at IS NULL OR stopped_at > ?)"
            " ORDER BY started_at",
            (end.isoformat(), start.isoformat()),
        )


class AuditLog(_Table):
    async def record(self, at: datetime, actor: str, action: str, target: str, result: str) -> None:
        await self._write(
            "INSERT INTO audit_log (at, actor, action, target, result) VALUES (?, ?, ?, ?, ?)",
            (at.isoformat(), actor, action, target, result),
        )

    async def recent(self, limit: int = 5) -> list[AuditEntry]:
        return await self._all(
            AuditEntry, "SELECT * FROM audit_log ORDER BY id DESC LIMIT ?", (limit,)
        )


class CostGuardStore(_Table):
    async def watch(self, version_arn: str) -> Watch | None:
        return await self._get(
            Watch, "SELECT * FROM cost_watch WHERE version_arn = ?", (version_arn,)
        )

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
    ) -> None:
        """Record a sighting; request times only move forward, unknowns keep what was known."""
        await self._write(
            """
            INSERT INTO cost_watch (version_arn, version_name, status, units, last_request_at,
                                    idle_since, metrics_until, seen_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(version_arn) DO UPDATE SET
                version_name = excluded.version_name,
                status = excluded.status,
                units = excluded.units,
                last_request_at = CASE
                    WHEN excluded.last_request_at IS NULL THEN cost_watch.last_request_at
                    WHEN cost_watch.last_request_at IS NULL THEN excluded.last_request_at
                    ELSE MAX(cost_watch.last_request_at, excluded.last_request_at) END,
                idle_since = excluded.idle_since,
                metrics_until = COALESCE(excluded.metrics_until, cost_watch.metrics_until),
                seen_at = excluded.seen_at
            """,
            (
                version_arn,
                version_name,
                status,
                units,
                _iso(last_request_at),
                _iso(idle_since),
                _iso(metrics_until),
                seen_at.isoformat(),
            ),
        )

    async def mark_stop_requested(
        self, version_arn: str, at: datetime | None, by: str | None
    ) -> None:
        await self._write(
            "UPDATE cost_watch SET stop_requested_at = ?, stop_requested_by = ?"
            " WHERE version_arn = ?",
            (_iso(at), by, version_arn),
        )

    async def mark_start_requested(self, version_arn: str, at: datetime | None) -> None:
        await self._write(
            "UPDATE cost_watch SET start_requested_at = ? WHERE version_arn = ?",
            (_iso(at), version_arn),
        )

    async def mark_stop_failed(self, version_arn: str, at: datetime | None) -> None:
        await self._write(
            "UPDATE cost_watch SET stop_failed_at = ? WHERE version_arn = ?",
            (_iso(at), version_arn),
        )

    async def open_episode(self, version_arn: str) -> Episode | None:
        return await self._get(
            Episode,
            "SELECT * FROM cost_episodes WHERE version_arn = ? AND state = 'open'",
            (version_arn,),
        )

    async def episode(self, episode_id: int) -> Episode | None:
        return await self._get(Episode, EPISODE, (episode_id,))

    async def open_episodes(self) -> list[Episode]:
        return await self._all(
            Episode, "SELECT * FROM cost_episodes WHERE state = 'open' ORDER BY id"
        )

    async def episodes(self) -> list[Episode]:
        return await self._all(Episode, "SELECT * FROM cost_episodes ORDER BY id")

    async def create_episode(
        self,
        version_arn: str,
        version_name: str,
        idle_since: datetime,
        units: int,
        now: datetime,
        *,
        channel: str | None,
        ts: str | None,
        next_alert_at: datetime,
        gap_minutes: float,
        state: str = "open",
        outcome: str | None = None,
        outcome_by: str | None = None,
    ) -> Episode:
        at = now.isoformat()
        values = (version_arn, version_name, idle_since.isoformat(), units, at, channel, ts, at)
        closed = (state, outcome, outcome_by, at if state != "open" else None)

        def work(c: sqlite3.Connection) -> Episode:
            cursor = c.execute(
                "INSERT INTO cost_episodes (version_arn, version_name, idle_since, units,"
                " opened_at, channel, ts, last_alert_at, next_alert_at, gap_minutes, state,"
                " outcome, outcome_by, outcome_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*values, next_alert_at.isoformat(), gap_minutes, *closed),
            )
            return _one(c, Episode, EPISODE, (int(cursor.lastrowid or 0),))  # type: ignore[return-value]

        return await self._atomic(work)

    async def record_follow_up(
        self, episode_id: int, now: datetime, next_alert_at: datetime, gap_minutes: float
    ) -> None:
        await self._write(
            "UPDATE cost_episodes SET alerts = alerts + 1, last_alert_at = ?, next_alert_at = ?,"
            " gap_minutes = ? WHERE id = ?",
            (now.isoformat(), next_alert_at.isoformat(), gap_minutes, episode_id),
        )

    async def set_message(self, episode_id: int, channel: str, ts: str) -> None:
        await self._write(
            "UPDATE cost_episodes SET channel = ?, ts = ? WHERE id = ?", (channel, ts, episode_id)
        )

    async def set_note(self, episode_id: int, note: str | None) -> None:
        await self._write("UPDATE cost_episodes SET note = ? WHERE id = ?", (note, episode_id))

    async def close_episode(
        self, episode_id: int, idle_end: datetime, outcome: str, by: str | None = None
    ) -> bool:
        """Close an open episode when its idle stretch ended (a request, a stop); False if it
        was already closed (a second press, a race)."""
        return (
            await self._write(
                "UPDATE cost_episodes SET state = 'closed', outcome = ?, outcome_by = ?,"
                " outcome_at = ? WHERE id = ? AND state = 'open'",
                (outcome, by, idle_end.isoformat(), episode_id),
            )
            == 1
        )

    async def snooze(self, version_arn: str) -> Snooze | None:
        return await self._get(
            Snooze, "SELECT * FROM cost_snoozes WHERE version_arn = ?", (version_arn,)
        )

    async def set_snooze(
        self, version_arn: str, until: datetime, by: str, at: datetime, episode_id: int | None
    ) -> None:
        await self._write(
            "INSERT OR REPLACE INTO cost_snoozes (version_arn, until, by, at, episode_id, expired)"
            " VALUES (?, ?, ?, ?, ?, 0)",
            (version_arn, until.isoformat(), by, at.isoformat(), episode_id),
        )

    async def mark_snooze_expired(self, version_arn: str) -> None:
        await self._write(
            "UPDATE cost_snoozes SET expired = 1 WHERE version_arn = ?", (version_arn,)
        )

    async def clear_snooze(self, version_arn: str) -> None:
        await self._write("DELETE FROM cost_snoozes WHERE version_arn = ?", (version_arn,))

    async def schedule_done(self, key: str) -> bool:
        return await self._db.run(
            lambda c: (
                c.execute("SELECT 1 FROM cost_schedule_actions WHERE key = ?", (key,)).fetchone()
                is not None
            )
        )

    async def record_schedule(self, key: str, at: datetime, result: str) -> bool:
        """Claim a schedule action; False if it was already done."""
        return (
            await self._write(
                "INSERT OR IGNORE INTO cost_schedule_actions (key, done_at, result) VALUES (?, ?, ?)",
                (key, at.isoformat(), result),
            )
            == 1
        )

    async def note_started(self, at: datetime) -> datetime:
        """Remember when the bot first watched the fleet (kept from the first call on)."""

        def work(c: sqlite3.Connection) -> datetime:
            c.execute(
                "INSERT OR IGNORE INTO fleet_facts (key, value) VALUES ('first_started', ?)",
                (at.isoformat(),),
            )
            return datetime.fromisoformat(c.execute(FIRST_STARTED).fetchone()["value"])

        return await self._atomic(work)

    async def first_started(self) -> datetime | None:
        row = await self._db.run(lambda c: c.execute(FIRST_STARTED).fetchone())
        return datetime.fromisoformat(row["value"]) if row else None

    async def summary_sent(self, day: date) -> bool:
        return await self._db.run(
            lambda c: (
                c.execute(
                    "SELECT 1 FROM cost_summaries WHERE day = ?", (day.isoformat(),)
                ).fetchone()
                is not None
            )
        )

    async def record_summary(
        self, day: date, at: datetime, channel: str | None = None, ts: str | None = None
    ) -> bool:
        return (
            await self._write(
                "INSERT OR IGNORE INTO cost_summaries (day, sent_at, channel, ts) VALUES (?, ?, ?, ?)",
                (day.isoformat(), at.isoformat(), channel, ts),
            )
            == 1
        )


class SqliteStore:
    """All of the fleet's state on one database, plus the intake's uploads and the leases."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.operations = OperationStore(db)
        self.runs = RunStore(db)
        self.guard = CostGuardStore(db)
        self.audit = AuditLog(db)
        self.uploads = UploadStore(db)
        self.leases = LeaseStore(db)
