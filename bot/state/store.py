"""The fleet's `Store` port (`bot.core.fleet.state`) on SQLite, and on PostgreSQL through
`bot.state.postgres.database` (the same SQL, translated).

Every call runs on the database's own thread (`Database.run`), one short statement or
transaction each, so a locked or slow database never stalls the event loop. One operation is
open per version (a unique index): a second claim finds the first. The guard's memory is what
lets a restart neither forget an alert nor repeat one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import fields
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from bot.core.fleet.state import AuditEntry, Episode, Operation, Run, Snooze, Watch
from bot.state.db import Database
from bot.state.leases import LeaseStore, in_transaction
from bot.state.uploads import UploadStore

T = TypeVar("T")
OPERATION = "SELECT * FROM lifecycle_operations WHERE id = ?"
OPEN_OPERATION = "SELECT * FROM lifecycle_operations WHERE finished_at IS NULL"
OPEN_RUN = "SELECT * FROM model_runs WHERE version_arn = ? AND stopped_at IS NULL"
EPISODE = "SELECT * FROM cost_episodes WHERE id = ?"


def _bind(params: tuple) -> tuple:
    """Parameters as the tables keep them: days and datetimes as ISO text, dicts as JSON."""
    return tuple(
        p.isoformat() if isinstance(p, date) else json.dumps(p) if isinstance(p, dict) else p
        for p in params
    )


def _insert(table: str, columns: str, verb: str = "INSERT") -> str:
    """`verb` ("INSERT", "INSERT OR IGNORE", ...) of one row, its values in `columns`' order."""
    marks = ", ".join("?" * (columns.count(",") + 1))
    return f"{verb} INTO {table} ({columns}) VALUES ({marks})"


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


def _one(c: sqlite3.Connection, noun: type[T], sql: str, *params: Any) -> T | None:
    row = c.execute(sql, _bind(params)).fetchone()
    return _read(noun, row) if row else None


class _Table:
    """Statements on the database thread: `_write` (the row count), `_get`, `_all`, `_exists`,
    `_atomic` (a transaction), `_update` (some columns of one row)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def _write(self, sql: str, *params: Any) -> int:
        return await self._db.run(lambda c: c.execute(sql, _bind(params)).rowcount)

    async def _get(self, noun: type[T], sql: str, *params: Any) -> T | None:
        return await self._db.run(lambda c: _one(c, noun, sql, *params))

    async def _all(self, noun: type[T], sql: str, *params: Any) -> list[T]:
        rows = await self._db.run(lambda c: c.execute(sql, _bind(params)).fetchall())
        return [_read(noun, row) for row in rows]

    async def _exists(self, sql: str, *params: Any) -> bool:
        return await self._db.run(lambda c: c.execute(sql, _bind(params)).fetchone() is not None)

    async def _atomic(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._db.run(lambda c: in_transaction(c, lambda: work(c)))

    async def _update(
        self, table: str, noun: type, key: str, value: Any, changes: dict[str, Any]
    ) -> None:
        """Set some columns of the row whose `key` is `value` (named as `noun`'s fields)."""
        unknown = set(changes) - {f.name for f in fields(noun)}
        if not changes or unknown:  # names become SQL: only the noun's own, always checked
            raise ValueError(f"not columns of {table}: {sorted(unknown) or 'none given'}")
        sets = ", ".join(f"{name} = ?" for name in changes)
        await self._write(f"UPDATE {table} SET {sets} WHERE {key} = ?", *changes.values(), value)


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
        sql = _insert(
            "lifecycle_operations",
            "kind, version_name, version_arn, channel, user, started_at, status, phase, data",
        )
        values = (kind, version_name, version_arn, channel, user, at, status, phase, data or {})

        def work(c: sqlite3.Connection) -> Operation | None:
            try:
                cursor = c.execute(sql, _bind(values))
            except sqlite3.IntegrityError:
                return None
            return _one(c, Operation, OPERATION, int(cursor.lastrowid or 0))

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
            now = _one(c, Operation, OPERATION, op_id)
            assert now is not None
            changed = (status or now.status, phase or now.phase, version_arn or now.version_arn)
            c.execute(
                "UPDATE lifecycle_operations SET status = ?, phase = ?, version_arn = ?, data = ?"
                " WHERE id = ?",
                _bind((*changed, {**now.data, **(data or {})}, op_id)),
            )
            return _one(c, Operation, OPERATION, op_id)  # type: ignore[return-value]

        return await self._atomic(work)

    async def finish(
        self, op_id: int, at: datetime, result: str, status: str | None = None
    ) -> None:
        sql = (
            "UPDATE lifecycle_operations SET finished_at = ?, result = ?,"
            " status = COALESCE(?, status) WHERE id = ? AND finished_at IS NULL"
        )
        await self._write(sql, at, result, status, op_id)

    async def get(self, op_id: int) -> Operation | None:
        return await self._get(Operation, OPERATION, op_id)

    async def open(self) -> list[Operation]:
        return await self._all(Operation, f"{OPEN_OPERATION} ORDER BY id")

    async def open_for(self, version_name: str) -> Operation | None:
        return await self._get(Operation, f"{OPEN_OPERATION} AND version_name = ?", version_name)

    async def open_training(self) -> Operation | None:
        return await self._get(Operation, f"{OPEN_OPERATION} AND kind = 'train'")


class RunStore(_Table):
    async def open_run(
        self, version_arn: str, started_at: datetime, units: int, source: str
    ) -> Run:
        """Start the meter for a version, unless a run is already open (then return that)."""
        sql = _insert("model_runs", "version_arn, started_at, units, source", "INSERT OR IGNORE")

        def work(c: sqlite3.Connection) -> Run:
            c.execute(sql, _bind((version_arn, started_at, units, source)))
            return _one(c, Run, OPEN_RUN, version_arn)  # type: ignore[return-value]

        return await self._atomic(work)

    async def set_units(self, version_arn: str, units: int) -> None:
        sql = "UPDATE model_runs SET units = ? WHERE version_arn = ? AND stopped_at IS NULL"
        await self._write(sql, units, version_arn)

    async def close_run(self, version_arn: str, stopped_at: datetime) -> Run | None:
        def work(c: sqlite3.Connection) -> Run | None:
            run = _one(c, Run, OPEN_RUN, version_arn)
            if run is None:
                return None
            c.execute(
                "UPDATE model_runs SET stopped_at = ? WHERE id = ?", _bind((stopped_at, run.id))
            )
            return _one(c, Run, "SELECT * FROM model_runs WHERE id = ?", run.id)

        return await self._atomic(work)

    async def current(self, version_arn: str) -> Run | None:
        return await self._get(Run, OPEN_RUN, version_arn)

    async def latest(self, version_arn: str, since: datetime) -> Run | None:
        """The version's last run if it ended at or after `since` (a stop confirmed late)."""
        sql = (
            "SELECT * FROM model_runs WHERE version_arn = ? AND stopped_at >= ?"
            " ORDER BY stopped_at DESC LIMIT 1"
        )
        return await self._get(Run, sql, version_arn, since)

    async def open_runs(self) -> list[Run]:
        return await self._all(Run, "SELECT * FROM model_runs WHERE stopped_at IS NULL")

    async def overlapping(self, start: datetime, end: datetime) -> list[Run]:
        """Runs that were on at any moment in [start, end) (for daily summaries)."""
        sql = (
            "SELECT * FROM model_runs WHERE started_at < ?"
            " AND (stopped_at IS NULL OR stopped_at > ?) ORDER BY started_at"
        )
        return await self._all(Run, sql, end, start)


class AuditLog(_Table):
    async def record(self, at: datetime, actor: str, action: str, target: str, result: str) -> None:
        sql = _insert("audit_log", "at, actor, action, target, result")
        await self._write(sql, at, actor, action, target, result)

    async def recent(self, limit: int = 5) -> list[AuditEntry]:
        return await self._all(
            AuditEntry, "SELECT * FROM audit_log ORDER BY id DESC LIMIT ?", limit
        )


class CostGuardStore(_Table):
    async def watch(self, version_arn: str) -> Watch | None:
        return await self._get(Watch, "SELECT * FROM cost_watch WHERE version_arn = ?", version_arn)

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
        sql = _insert(
            "cost_watch",
            "version_arn, version_name, status, units, last_request_at, idle_since,"
            " metrics_until, seen_at",
        )
        await self._write(
            f"""{sql} ON CONFLICT(version_arn) DO UPDATE SET
                version_name = excluded.version_name,
                status = excluded.status,
                units = excluded.units,
                last_request_at = CASE
                    WHEN excluded.last_request_at IS NULL THEN cost_watch.last_request_at
                    WHEN cost_watch.last_request_at IS NULL THEN excluded.last_request_at
                    ELSE MAX(cost_watch.last_request_at, excluded.last_request_at) END,
                idle_since = excluded.idle_since,
                metrics_until = COALESCE(excluded.metrics_until, cost_watch.metrics_until),
                seen_at = excluded.seen_at""",
            *(version_arn, version_name, status, units, last_request_at, idle_since),
            *(metrics_until, seen_at),
        )

    async def update_watch(self, version_arn: str, **changes: Any) -> None:
        await self._update("cost_watch", Watch, "version_arn", version_arn, changes)

    async def open_episode(self, version_arn: str) -> Episode | None:
        sql = "SELECT * FROM cost_episodes WHERE version_arn = ? AND state = 'open'"
        return await self._get(Episode, sql, version_arn)

    async def episode(self, episode_id: int) -> Episode | None:
        return await self._get(Episode, EPISODE, episode_id)

    async def episodes(self) -> list[Episode]:
        return await self._all(Episode, "SELECT * FROM cost_episodes ORDER BY id")

    async def create_episode(self, watch: Watch, now: datetime, gap: timedelta) -> Episode:
        """Open an episode for a watched version idle since `watch.idle_since`; its first
        reminder is due `gap` from now."""
        sql = _insert(
            "cost_episodes",
            "version_arn, version_name, idle_since, units, opened_at, last_alert_at,"
            " next_alert_at, gap_minutes",
        )
        values = (watch.version_arn, watch.version_name, watch.idle_since, watch.units, now, now)
        values += (now + gap, gap.total_seconds() / 60)

        def work(c: sqlite3.Connection) -> Episode:
            cursor = c.execute(sql, _bind(values))
            return _one(c, Episode, EPISODE, int(cursor.lastrowid or 0))  # type: ignore[return-value]

        return await self._atomic(work)

    async def update_episode(self, episode_id: int, **changes: Any) -> None:
        await self._update("cost_episodes", Episode, "id", episode_id, changes)

    async def close_episode(
        self, episode_id: int, idle_end: datetime, outcome: str, by: str | None = None
    ) -> bool:
        """Close an open episode when its idle stretch ended (a request, a stop); False if it
        was already closed (a second press, a race)."""
        sql = (
            "UPDATE cost_episodes SET state = 'closed', outcome = ?, outcome_by = ?,"
            " outcome_at = ? WHERE id = ? AND state = 'open'"
        )
        return await self._write(sql, outcome, by, idle_end, episode_id) == 1

    async def snooze(self, version_arn: str) -> Snooze | None:
        sql = "SELECT * FROM cost_snoozes WHERE version_arn = ?"
        return await self._get(Snooze, sql, version_arn)

    async def set_snooze(self, version_arn: str, snooze: Snooze | None) -> None:
        """Keep (or replace) the version's snooze; None forgets it."""
        if snooze is None:
            await self._write("DELETE FROM cost_snoozes WHERE version_arn = ?", version_arn)
            return
        sql = _insert(
            "cost_snoozes", "version_arn, until, by, at, episode_id, expired", "INSERT OR REPLACE"
        )
        s = snooze
        await self._write(sql, s.version_arn, s.until, s.by, s.at, s.episode_id, int(s.expired))

    async def schedule_done(self, key: str) -> bool:
        return await self._exists("SELECT 1 FROM cost_schedule_actions WHERE key = ?", key)

    async def record_schedule(self, key: str, at: datetime, result: str) -> bool:
        """Claim a schedule action; False if it was already done."""
        sql = _insert("cost_schedule_actions", "key, done_at, result", "INSERT OR IGNORE")
        return await self._write(sql, key, at, result) == 1

    async def note_started(self, at: datetime) -> datetime:
        """Remember when the bot first watched the fleet (kept from the first call on)."""

        def work(c: sqlite3.Connection) -> datetime:
            sql = _insert("fleet_facts", "key, value", "INSERT OR IGNORE")
            c.execute(sql, ("first_started", at.isoformat()))
            row = c.execute("SELECT value FROM fleet_facts WHERE key = 'first_started'").fetchone()
            return datetime.fromisoformat(row["value"])

        return await self._atomic(work)

    async def summary_sent(self, day: date) -> bool:
        return await self._exists("SELECT 1 FROM cost_summaries WHERE day = ?", day)

    async def record_summary(
        self, day: date, at: datetime, channel: str | None = None, ts: str | None = None
    ) -> bool:
        sql = _insert("cost_summaries", "day, sent_at, channel, ts", "INSERT OR IGNORE")
        return await self._write(sql, day, at, channel, ts) == 1


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
