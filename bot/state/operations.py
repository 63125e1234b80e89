"""Lifecycle operations in flight (train, start, stop), kept across restarts.

A row is claimed before AWS is asked to do anything, so a second command for the same version
(or a second training) finds it and says what is already happening; the fleet poller follows open
rows until the model reaches an end state, then closes them with a result. After a restart the
open rows are what the poller resumes, and `channel` is where it posts the outcome.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from bot.core.fleet.state import START, STOP, TRAIN, Operation
from bot.state.db import Database

__all__ = ["START", "STOP", "TRAIN", "Operation", "OperationStore"]


class OperationStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def claim(
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
        try:
            cursor = self._db.execute(
                "INSERT INTO lifecycle_operations (kind, version_name, version_arn, channel, user,"
                " started_at, status, phase, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    kind,
                    version_name,
                    version_arn,
                    channel,
                    user,
                    at.isoformat(),
                    status,
                    phase,
                    json.dumps(data or {}),
                ),
            )
        except sqlite3.IntegrityError:
            return None
        return self.get(int(cursor.lastrowid or 0))

    def update(
        self,
        op_id: int,
        *,
        status: str | None = None,
        phase: str | None = None,
        version_arn: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> Operation:
        """Change some fields; `data` is merged into the stored data."""
        current = self.get(op_id)
        assert current is not None
        merged = {**current.data, **(data or {})}
        self._db.execute(
            "UPDATE lifecycle_operations SET status = ?, phase = ?, version_arn = ?, data = ?"
            " WHERE id = ?",
            (
                status or current.status,
                phase or current.phase,
                version_arn or current.version_arn,
                json.dumps(merged),
                op_id,
            ),
        )
        updated = self.get(op_id)
        assert updated is not None
        return updated

    def finish(self, op_id: int, at: datetime, result: str, status: str | None = None) -> None:
        self._db.execute(
            "UPDATE lifecycle_operations SET finished_at = ?, result = ?,"
            " status = COALESCE(?, status) WHERE id = ? AND finished_at IS NULL",
            (at.isoformat(), result, status, op_id),
        )

    def get(self, op_id: int) -> Operation | None:
        row = self._db.one("SELECT * FROM lifecycle_operations WHERE id = ?", (op_id,))
        return _operation(row) if row else None

    def open(self) -> list[Operation]:
        rows = self._db.query(
            "SELECT * FROM lifecycle_operations WHERE finished_at IS NULL ORDER BY id"
        )
        return [_operation(r) for r in rows]

    def open_for(self, version_name: str) -> Operation | None:
        row = self._db.one(
            "SELECT * FROM lifecycle_operations WHERE finished_at IS NULL AND version_name = ?",
            (version_name,),
        )
        return _operation(row) if row else None

    def open_training(self) -> Operation | None:
        row = self._db.one(
            "SELECT * FROM lifecycle_operations WHERE finished_at IS NULL AND kind = 'train'"
        )
        return _operation(row) if row else None

    def recent(self, limit: int = 10) -> list[Operation]:
        rows = self._db.query(
            "SELECT * FROM lifecycle_operations ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [_operation(r) for r in rows]


def _operation(row: sqlite3.Row) -> Operation:
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
        finished_at=datetime.fromisoformat(row["finished_at"]) if row["finished_at"] else None,
        result=row["result"],
    )
