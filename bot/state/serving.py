"""Which Rekognition version serves, and the promotions that change it.

The served version is stored, so a promotion outlives restarts; `CXR_PROJECT_VERSION_ARN` is
only the value used until a first promotion is recorded.
"""

from __future__ import annotations

from datetime import datetime

from bot.core.learning.ports import Promotion, ServedVersion
from bot.state.db import Database


class ServingStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def served(self) -> ServedVersion | None:
        row = self._db.one("SELECT * FROM serving WHERE id = 1")
        if row is None:
            return None
        return ServedVersion(row["version_arn"], datetime.fromisoformat(row["since"]), row["by"])

    def serve(self, version_arn: str, by: str, at: datetime) -> None:
        self._db.execute(
            "INSERT INTO serving (id, version_arn, since, by) VALUES (1, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET version_arn = excluded.version_arn,"
            " since = excluded.since, by = excluded.by",
            (version_arn, at.isoformat(), by),
        )

    # --- promotions --------------------------------------------------------------------------
    def open_promotion(
        self,
        candidate_arn: str,
        previous_arn: str | None,
        channel: str,
        user: str,
        units: int,
        at: datetime,
    ) -> Promotion | None:
        """Record a promotion in flight; None if another one is open."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO promotions (candidate_arn, previous_arn, channel, user, units,"
            " state, started_at) VALUES (?, ?, ?, ?, ?, 'starting', ?)",
            (candidate_arn, previous_arn, channel, user, units, at.isoformat()),
        )
        if cursor.rowcount != 1:
            return None
        return self.in_flight()

    def in_flight(self) -> Promotion | None:
        row = self._db.one("SELECT * FROM promotions WHERE state = 'starting'")
        return _promotion(row) if row else None

    def complete(self, promotion_id: int, version_arn: str, by: str, at: datetime) -> bool:
        """The promotion ends with its candidate served, in one transaction; False when it had
        already ended (another instance completed it)."""
        with self._db.transaction() as conn:
            done = conn.execute(
                "UPDATE promotions SET state = 'serving', finished_at = ? WHERE id = ?"
                " AND state = 'starting'",
                (at.isoformat(), promotion_id),
            )
            if done.rowcount != 1:
                return False
            conn.execute(
                "INSERT INTO serving (id, version_arn, since, by) VALUES (1, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET version_arn = excluded.version_arn,"
                " since = excluded.since, by = excluded.by",
                (version_arn, at.isoformat(), by),
            )
        return True

    def note(self, promotion_id: int, note: str) -> None:
        self._db.execute("UPDATE promotions SET note = ? WHERE id = ?", (note, promotion_id))

    def finish(self, promotion_id: int, state: str, at: datetime, note: str = "") -> None:
        self._db.execute(
            "UPDATE promotions SET state = ?, finished_at = ?, note = ? WHERE id = ?",
            (state, at.isoformat(), note or None, promotion_id),
        )


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
