"""When each model version ran: the meter behind running costs, idle alerts and summaries.

A run opens when a version is seen RUNNING (started by the bot, or found running by the
poller, e.g. started from the console) and closes when it is seen stopped.
"""

from __future__ import annotations

from datetime import datetime

from bot.core.fleet.state import Run
from bot.state.db import Database

__all__ = ["Run", "RunStore"]


class RunStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def open_run(self, version_arn: str, started_at: datetime, units: int, source: str) -> Run:
        """Start the meter for a version, unless a run is already open (then return that)."""
        self._db.execute(
            "INSERT OR IGNORE INTO model_runs (version_arn, started_at, units, source)"
            " VALUES (?, ?, ?, ?)",
            (version_arn, started_at.isoformat(), units, source),
        )
        current = self.current(version_arn)
        assert current is not None
        return current

    def set_units(self, version_arn: str, units: int) -> None:
        self._db.execute(
            "UPDATE model_runs SET units = ? WHERE version_arn = ? AND stopped_at IS NULL",
            (units, version_arn),
        )

    def close_run(self, version_arn: str, stopped_at: datetime) -> Run | None:
        current = self.current(version_arn)
        if current is None:
            return None
        self._db.execute(
            "UPDATE model_runs SET stopped_at = ? WHERE id = ?",
            (stopped_at.isoformat(), current.id),
        )
        return self._get(current.id)

    def current(self, version_arn: str) -> Run | None:
        row = self._db.one(
            "SELECT * FROM model_runs WHERE version_arn = ? AND stopped_at IS NULL", (version_arn,)
        )
        return _run(row) if row else None

    def latest(self, version_arn: str, since: datetime) -> Run | None:
        """The version's last run if it ended at or after `since` (a stop confirmed late)."""
        row = self._db.one(
            "SELECT * FROM model_runs WHERE version_arn = ? AND stopped_at >= ?"
            " ORDER BY stopped_at DESC LIMIT 1",
            (version_arn, since.isoformat()),
        )
        return _run(row) if row else None

    def open_runs(self) -> list[Run]:
        return [
            _run(r) for r in self._db.query("SELECT * FROM model_runs WHERE stopped_at IS NULL")
        ]

    def overlapping(self, start: datetime, end: datetime) -> list[Run]:
        """Runs that were on at any moment in [start, end) (for daily summaries)."""
        rows = self._db.query(
            "SELECT * FROM model_runs WHERE started_at < ? AND (stopped_at IS NULL OR stopped_at > ?)"
            " ORDER BY started_at",
            (end.isoformat(), start.isoformat()),
        )
        return [_run(r) for r in rows]

    def _get(self, run_id: int) -> Run | None:
        row = self._db.one("SELECT * FROM model_runs WHERE id = ?", (run_id,))
        return _run(row) if row else None


def _run(row) -> Run:
    return Run(
        id=row["id"],
        version_arn=row["version_arn"],
        started_at=datetime.fromisoformat(row["started_at"]),
        stopped_at=datetime.fromisoformat(row["stopped_at"]) if row["stopped_at"] else None,
        units=row["units"],
        source=row["source"],
    )
