"""Which Rekognition version serves, and the promotions that change it.

The served version is stored, so a promotion outlives restarts; `CXR_PROJECT_VERSION_ARN` is
only the value used until a first promotion is recorded.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from bot.core.learning.ports import Promotion, ServedVersion
from bot.state.db import Database
from bot.state.leases import in_transaction


class ServingStore:
    """Async, on the database's own thread (`Database.run`), like every store the loop calls."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def served(self) -> ServedVersion | None:
        row = await self._db.run(
            lambda c: c.execute("SELECT * FROM serving WHERE id = 1").fetchone()
        )
        if row is None:
            return None
        return ServedVersion(row["version_arn"], datetime.fromisoformat(row["since"]), row["by"])

    async def serve(self, version_arn: str, by: str, at: datetime) -> None:
        await self._db.run(lambda c: _serve(c, version_arn, by, at))

    # --- promotions --------------------------------------------------------------------------
    async def open_promotion(
        self,
        candidate_arn: str,
        previous_arn: str | None,
        channel: str,
        user: str,
        units: int,
        at: datetime,
    ) -> Promotion | None:
        """Record a promotion in flight; None if another one is open."""

        def work(c: sqlite3.Connection) -> Promotion | None:
            cursor = c.execute(
                "INSERT OR IGNORE INTO promotions (candidate_arn, previous_arn, channel, user,"
                " units, state, started_at) VALUES (?, ?, ?, ?, ?, 'starting', ?)",
                (candidate_arn, previous_arn, channel, user, units, at.isoformat()),
            )
            return _in_flight(c) if cursor.rowcount == 1 else None

        return await self._db.run(work)

    async def in_flight(self) -> Promotion | None:
        return await self._db.run(_in_flight)

    async def complete(self, promotion_id: int, version_arn: str, by: str, at: datetime) -> bool:
        """The promotion ends with its candidate served, in one transaction; False when it had
        already ended (another instance completed it)."""

        def work(c: sqlite3.Connection) -> bool:
            done = c.execute(
                "UPDATE promotions SET state = 'serving', finished_at = ? WHERE id = ?"
                " AND state = 'starting'",
                (at.isoformat(), promotion_id),
            )
            if done.rowcount != 1:
                return False
            _serve(c, version_arn, by, at)
            return True

        return await self._db.run(lambda c: in_transaction(c, lambda: work(c)))

    async def note(self, promotion_id: int, note: str) -> None:
        await self._db.run(
            lambda c: c.execute("UPDATE promotions SET note = ? WHERE id = ?", (note, promotion_id))
        )

    async def finish(self, promotion_id: int, state: str, at: datetime, note: str = "") -> None:
        await self._db.run(
            lambda c: c.execute(
                "UPDATE promotions SET state = ?, finished_at = ?, note = ? WHERE id = ?",
                (state, at.isoformat(), note or None, promotion_id),
            )
        )


def _serve(c: sqlite3.Connection, version_arn: str, by: str, at: datetime) -> None:
    c.execute(
        "INSERT INTO serving (id, version_arn, since, by) VALUES (1, ?, ?, ?)"
        " ON CONFLICT(id) DO UPDATE SET version_arn = excluded.version_arn,"
        " since = excluded.since, by = excluded.by",
        (version_arn, at.isoformat(), by),
    )


def _in_flight(c: sqlite3.Connection) -> Promotion | None:
    row = c.execute("SELECT * FROM promotions WHERE state = 'starting'").fetchone()
    return _promotion(row) if row else None


def _promotion(row) -> Promotion:
    return Promotion(
        row["id"],
        row["candidate_arn"],
        row["previous_arn"],
        row["channel"],
        row["user"],
        row["units"],
        row["state"],
        datetime.fromisoformat(row["started_at"]),
        row["note"],
    )
