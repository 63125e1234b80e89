"""The fleet's `Store` port (`bot.core.fleet.state`) on SQLite: operations in flight, runs (the
billing meter), the cost guard's memory and the audit log, beside the uploads and leases.

Every call is async and runs on the database's own thread (`Database.run`), one short
statement or transaction each, so a locked or slow database never stalls the event loop. The
same SQL serves PostgreSQL through `bot.state.postgres.database` (translated).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

from bot.core.fleet.state import AuditEntry, Episode, Operation, Run, Snooze, Watch
from bot.state.db import Database
from bot.state.leases import LeaseStore, in_transaction
from bot.state.uploads import UploadStore

T = TypeVar("T")


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class _Table:
    """Statements on the database thread: `_write` (the row count), `_rows`, `_row`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def _write(self, sql: str, params: tuple = ()) -> int:
        return await self._db.run(lambda c: c.execute(sql, params).rowcount)

    async def _rows(self, sql: str, params: tuple = ()) -> list[Any]:
        return await self._db.run(lambda c: c.execute(sql, params).fetchall())

    async def _row(self, sql: str, params: tuple = ()) -> Any:
        return await self._db.run(lambda c: c.execute(sql, params).fetchone())

    async def _atomic(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._db.run(lambda c: in_transaction(c, lambda: work(c)))


# --- operations in flight ---------------------------------------------------------------------
class OperationStore(_Table):
    """A row is claimed before AWS is asked; one open operation per version (a unique index)."""

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
            return _get_operation(c, int(cursor.lastrowid or 0))

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
            current = _get_operation(c, op_id)
            assert current is not None
            c.execute(
                "UPDATE lifecycle_operations SET status = ?, phase = ?, version_arn = ?, data = ?"
                " WHERE id = ?",
                (
                    status or current.status,
                    phase or current.phase,
                    version_arn or current.version_arn,
                    json.dumps({**current.data, **(data or {})}),
                    op_id,
                ),
            )
            updated = _get_operation(c, op_id)
            assert updated is not None
            return updated

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
        return await self._db.run(lambda c: _get_operation(c, op_id))

    async def open(self) -> list[Operation]:
        rows = await self._rows(
            "SELECT * FROM lifecycle_operations WHERE finished_at IS NULL ORDER BY id"
        )
        return [_operation(r) for r in rows]

    async def open_for(self, version_name: str) -> Operation | None:
        row = await self._row(
            "SELECT * FROM lifecycle_operations WHERE finished_at IS NULL AND version_name = ?",
            (version_name,),
        )
        return _operation(row) if row else None

    async def open_training(self) -> Operation | None:
        row = await self._row(
            "SELECT * FROM lifecycle_operations WHERE finished_at IS NULL AND kind = 'train'"
        )
        return _operation(row) if row else None

    async def recent(self, limit: int = 10) -> list[Operation]:
        rows = await self._rows(
            "SELECT * FROM lifecycle_operations ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [_operation(r) for r in rows]


def _get_operation(c: sqlite3.Connection, op_id: int) -> Operation | None:
    row = c.execute("SELECT * FROM lifecycle_operations WHERE id = ?", (op_id,)).fetchone()
    return _operation(row) if row else None


def _operation(row: Any) -> Operation:
    return Operation(
        id=row["id"],
        kind=row["kind"],
        version_name=row["version_name"],
        version_arn=row["version_arn"],
        channel=row["channel"],
        user=row["user"],
        started_at=datetime.fromisoformat(row["started_at"]),
        status=row["status"],
        phase=row["phase"],
        data=json.loads(row["data"] or "{}"),
        finished_at=_dt(row["finished_at"]),
        result=row["result"],
    )


# --- runs: the meter --------------------------------------------------------------------------
class RunStore(_Table):
    """A run opens when a version is seen RUNNING and closes when it is seen stopped."""

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
            current = _current_run(c, version_arn)
            assert current is not None
            return current

        return await self._atomic(work)

    async def set_units(self, version_arn: str, units: int) -> None:
        await self._write(
            "UPDATE model_runs SET units = ? WHERE version_arn = ? AND stopped_at IS NULL",
            (units, version_arn),
        )

    async def close_run(self, version_arn: str, stopped_at: datetime) -> Run | None:
        def work(c: sqlite3.Connection) -> Run | None:
            current = _current_run(c, version_arn)
            if current is None:
                return None
            c.execute(
                "UPDATE model_runs SET stopped_at = ? WHERE id = ?",
                (stopped_at.isoformat(), current.id),
            )
            row = c.execute("SELECT * FROM model_runs WHERE id = ?", (current.id,)).fetchone()
            return _run(row)

        return await self._atomic(work)

    async def current(self, version_arn: str) -> Run | None:
        return await self._db.run(lambda c: _current_run(c, version_arn))

    async def latest(self, version_arn: str, since: datetime) -> Run | None:
        """The version's last run if it ended at or after `since` (a stop confirmed late)."""
        row = await self._row(
            "SELECT * FROM model_runs WHERE version_arn = ? AND stopped_at >= ?"
            " ORDER BY stopped_at DESC LIMIT 1",
            (version_arn, since.isoformat()),
        )
        return _run(row) if row else None

    async def open_runs(self) -> list[Run]:
        return [
            _run(r) for r in await self._rows("SELECT * FROM model_runs WHERE stopped_at IS NULL")
        ]

    async def overlapping(self, start: datetime, end: datetime) -> list[Run]:
        """Runs that were on at any moment in [start, end) (for daily summaries)."""
        rows = await self._rows(
            "SELECT * FROM model_runs WHERE started_at < ? AND (stopped_at IS NULL OR stopped_at > ?)"
            " ORDER BY started_at",
            (end.isoformat(), start.isoformat()),
        )
        return [_run(r) for r in rows]


def _current_run(c: sqlite3.Connection, version_arn: str) -> Run | None:
    row = c.execute(
        "SELECT * FROM model_runs WHERE version_arn = ? AND stopped_at IS NULL", (version_arn,)
    ).fetchone()
    return _run(row) if row else None


def _run(row: Any) -> Run:
    return Run(
        id=row["id"],
        version_arn=row["version_arn"],
        started_at=datetime.fromisoformat(row["started_at"]),
        stopped_at=_dt(row["stopped_at"]),
        units=row["units"],
        source=row["source"],
    )


# --- the audit log ----------------------------------------------------------------------------
class AuditLog(_Table):
    """Who did what to the model, when, and how it ended."""

    async def record(self, at: datetime, actor: str, action: str, target: str, result: str) -> None:
        await self._write(
            "INSERT INTO audit_log (at, actor, action, target, result) VALUES (?, ?, ?, ?, ?)",
            (at.isoformat(), actor, action, target, result),
        )

    async def recent(self, limit: int = 5) -> list[AuditEntry]:
        rows = await self._rows("SELECT * FROM audit_log ORDER BY id DESC LIMIT ?", (limit,))
        return [
            AuditEntry(
                datetime.fromisoformat(r["at"]), r["actor"], r["action"], r["target"], r["result"]
            )
            for r in rows
        ]


# --- the cost guard's memory ------------------------------------------------------------------
class CostGuardStore(_Table):
    """What each version was last seen doing, idle episodes and their alerts, snoozes, schedule
    actions done and summaries sent: a restart neither forgets an alert nor repeats one."""

    async def watch(self, version_arn: str) -> Watch | None:
        row = await self._row("SELECT * FROM cost_watch WHERE version_arn = ?", (version_arn,))
        return _watch(row) if row else None

    async def watches(self) -> list[Watch]:
        return [
            _watch(r) for r in await self._rows("SELECT * FROM cost_watch ORDER BY version_name")
        ]

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
        row = await self._row(
            "SELECT * FROM cost_episodes WHERE version_arn = ? AND state = 'open'", (version_arn,)
        )
        return _episode(row) if row else None

    async def episode(self, episode_id: int) -> Episode | None:
        row = await self._row("SELECT * FROM cost_episodes WHERE id = ?", (episode_id,))
        return _episode(row) if row else None

    async def open_episodes(self) -> list[Episode]:
        rows = await self._rows("SELECT * FROM cost_episodes WHERE state = 'open' ORDER BY id")
        return [_episode(r) for r in rows]

    async def episodes(self) -> list[Episode]:
        return [_episode(r) for r in await self._rows("SELECT * FROM cost_episodes ORDER BY id")]

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
        values = (
            version_arn,
            version_name,
            idle_since.isoformat(),
            units,
            now.isoformat(),
            channel,
            ts,
            now.isoformat(),
            next_alert_at.isoformat(),
            gap_minutes,
            state,
            outcome,
            outcome_by,
            now.isoformat() if state != "open" else None,
        )

        def work(c: sqlite3.Connection) -> Episode:
            cursor = c.execute(
                "INSERT INTO cost_episodes (version_arn, version_name, idle_since, units,"
                " opened_at, channel, ts, last_alert_at, next_alert_at, gap_minutes, state,"
                " outcome, outcome_by, outcome_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
            row = c.execute(
                "SELECT * FROM cost_episodes WHERE id = ?", (int(cursor.lastrowid or 0),)
            ).fetchone()
            return _episode(row)

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
        closed = await self._write(
            "UPDATE cost_episodes SET state = 'closed', outcome = ?, outcome_by = ?,"
            " outcome_at = ? WHERE id = ? AND state = 'open'",
            (outcome, by, idle_end.isoformat(), episode_id),
        )
        return closed == 1

    async def snooze(self, version_arn: str) -> Snooze | None:
        row = await self._row("SELECT * FROM cost_snoozes WHERE version_arn = ?", (version_arn,))
        if row is None:
            return None
        return Snooze(
            version_arn=row["version_arn"],
            until=datetime.fromisoformat(row["until"]),
            by=row["by"],
            at=datetime.fromisoformat(row["at"]),
            episode_id=row["episode_id"],
            expired=bool(row["expired"]),
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
        return (
            await self._row("SELECT 1 FROM cost_schedule_actions WHERE key = ?", (key,)) is not None
        )

    async def record_schedule(self, key: str, at: datetime, result: str) -> bool:
        """Claim a schedule action; False if it was already done."""
        inserted = await self._write(
            "INSERT OR IGNORE INTO cost_schedule_actions (key, done_at, result) VALUES (?, ?, ?)",
            (key, at.isoformat(), result),
        )
        return inserted == 1

    async def note_started(self, at: datetime) -> datetime:
        """Remember when the bot first watched the fleet (kept from the first call on)."""

        def work(c: sqlite3.Connection) -> datetime:
            c.execute(
                "INSERT OR IGNORE INTO fleet_facts (key, value) VALUES ('first_started', ?)",
                (at.isoformat(),),
            )
            started = _first_started(c)
            assert started is not None
            return started

        return await self._atomic(work)

    async def first_started(self) -> datetime | None:
        return await self._db.run(_first_started)

    async def summary_sent(self, day: date) -> bool:
        row = await self._row("SELECT 1 FROM cost_summaries WHERE day = ?", (day.isoformat(),))
        return row is not None

    async def record_summary(
        self, day: date, at: datetime, channel: str | None = None, ts: str | None = None
    ) -> bool:
        inserted = await self._write(
            "INSERT OR IGNORE INTO cost_summaries (day, sent_at, channel, ts) VALUES (?, ?, ?, ?)",
            (day.isoformat(), at.isoformat(), channel, ts),
        )
        return inserted == 1


def _first_started(c: sqlite3.Connection) -> datetime | None:
    row = c.execute("SELECT value FROM fleet_facts WHERE key = 'first_started'").fetchone()
    return _dt(row["value"]) if row else None


def _watch(row: Any) -> Watch:
    return Watch(
        version_arn=row["version_arn"],
        version_name=row["version_name"],
        status=row["status"],
        units=row["units"],
        last_request_at=_dt(row["last_request_at"]),
        idle_since=_dt(row["idle_since"]),
        metrics_until=_dt(row["metrics_until"]),
        seen_at=datetime.fromisoformat(row["seen_at"]),
        stop_requested_at=_dt(row["stop_requested_at"]),
        stop_requested_by=row["stop_requested_by"],
        start_requested_at=_dt(row["start_requested_at"]),
        stop_failed_at=_dt(row["stop_failed_at"]),
    )


def _episode(row: Any) -> Episode:
    return Episode(
        id=row["id"],
        version_arn=row["version_arn"],
        version_name=row["version_name"],
        idle_since=datetime.fromisoformat(row["idle_since"]),
        units=row["units"],
        opened_at=datetime.fromisoformat(row["opened_at"]),
        channel=row["channel"],
        ts=row["ts"],
        alerts=row["alerts"],
        last_alert_at=datetime.fromisoformat(row["last_alert_at"]),
        next_alert_at=datetime.fromisoformat(row["next_alert_at"]),
        gap_minutes=row["gap_minutes"],
        state=row["state"],
        outcome=row["outcome"],
        outcome_by=row["outcome_by"],
        outcome_at=_dt(row["outcome_at"]),
        note=row["note"],
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
