"""Reviews and each model's answers: what the learning loop's figures are computed from.

No image is kept: a case is the Slack message and file ID, enough to fetch the image again.
Every review is a row of its own (the audit trail); the latest per case is the one that counts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from bot.core.labels import Label
from bot.core.learning.ports import ReviewedImage
from bot.core.ports import ImageRef
from bot.core.review.figures import Answer, ModelKey
from bot.core.review.records import CaseKey, Review, ReviewLabel, current_reviews
from bot.state.db import Database

T = TypeVar("T")


class ReviewStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Run one of the synchronous methods (or several, in `fn`) on the database's thread,
        so the event loop never waits on SQLite."""
        return await self._db.run(lambda _conn: fn(*args))

    # --- model answers (written by intake) ---------------------------------------------------
    async def record_answers(self, answers: Iterable[Answer], at: datetime) -> None:
        """Each model's answer per image, on the database's own thread."""
        rows = [
            (
                a.case.channel,
                a.case.ts,
                a.case.file_id,
                a.model.kind,
                a.model.version,
                a.label.value,
                int(a.uncertain),
                at.isoformat(),
            )
            for a in answers
        ]

        def write(conn) -> None:
            conn.executemany(
                "INSERT OR REPLACE INTO model_answers (channel, ts, file_id, model_kind,"
                " model_version, label, uncertain, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

        await self._db.run(write)

    def answers(self, since: datetime | None = None) -> list[Answer]:
        """Every model answer (given at or after `since`, if set)."""
        return [answer for answer, _ in self.answers_at(since)]

    def answers_at(self, since: datetime | None = None) -> list[tuple[Answer, datetime]]:
        """Every model answer with when it was given (at or after `since`, if set)."""
        sql = "SELECT * FROM model_answers"
        params: tuple = ()
        if since is not None:
            sql, params = sql + " WHERE at >= ?", (since.isoformat(),)
        return [
            (
                Answer(
                    CaseKey(r["channel"], r["ts"], r["file_id"]),
                    ModelKey(r["model_kind"], r["model_version"]),
                    Label(r["label"]),
                    bool(r["uncertain"]),
                ),
                datetime.fromisoformat(r["at"]),
            )
            for r in self._db.query(sql, params)
        ]

    def answered(self, case: CaseKey) -> bool:
        row = self._db.one(
            "SELECT 1 FROM model_answers WHERE channel = ? AND ts = ? AND file_id = ?",
            (case.channel, case.ts, case.file_id),
        )
        return row is not None

    # --- reviews -----------------------------------------------------------------------------
    def record(self, review: Review) -> None:
        c = review.case
        self._db.execute(
            "INSERT INTO reviews (channel, ts, file_id, reviewer, label, at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                c.channel,
                c.ts,
                c.file_id,
                review.reviewer,
                review.label.value,
                review.at.isoformat(),
            ),
        )

    def history(self, case: CaseKey) -> list[Review]:
        rows = self._db.query(
            "SELECT * FROM reviews WHERE channel = ? AND ts = ? AND file_id = ? ORDER BY at, id",
            (case.channel, case.ts, case.file_id),
        )
        return [_review(r) for r in rows]

    def current(self, case: CaseKey) -> Review | None:
        return current_reviews(self.history(case)).get(case)

    def current_all(self) -> dict[CaseKey, Review]:
        rows = self._db.query("SELECT * FROM reviews ORDER BY at, id")
        return current_reviews(_review(r) for r in rows)

    def reviewed_images(self) -> list[ReviewedImage]:
        """Every reviewed case, latest label, with the file reference from its upload."""
        current = self.current_all()
        refs: dict[tuple[str, str], dict[str, ImageRef]] = {}
        for channel, ts in {c.message for c in current}:
            row = self._db.one(
                "SELECT files FROM uploads WHERE channel = ? AND ts = ?", (channel, ts)
            )
            files = json.loads(row["files"]) if row else []
            refs[(channel, ts)] = {f["file_id"]: ImageRef(**f) for f in files}
        return [
            ReviewedImage(review, refs[case.message].get(case.file_id))
            for case, review in sorted(current.items(), key=lambda item: item[1].at)
        ]

    # --- exports for training ----------------------------------------------------------------
    def mark_exported(self, cases: Iterable[CaseKey], destination: str, at: datetime) -> None:
        with self._db.transaction() as conn:
            for c in cases:
                conn.execute(
                    "INSERT OR IGNORE INTO training_exports (channel, ts, file_id, destination,"
                    " at) VALUES (?, ?, ?, ?, ?)",
                    (c.channel, c.ts, c.file_id, destination, at.isoformat()),
                )

    def exported(self) -> frozenset[CaseKey]:
        return frozenset(self.exported_at())

    def exported_at(self) -> dict[CaseKey, datetime]:
        """When each exported case was first exported for training."""
        rows = self._db.query(
            "SELECT channel, ts, file_id, MIN(at) AS at FROM training_exports"
            " GROUP BY channel, ts, file_id"
        )
        return {
            CaseKey(r["channel"], r["ts"], r["file_id"]): datetime.fromisoformat(r["at"])
            for r in rows
        }


def _review(row) -> Review:
    return Review(
        CaseKey(row["channel"], row["ts"], row["file_id"]),
        row["reviewer"],
        ReviewLabel(row["label"]),
        datetime.fromisoformat(row["at"]),
    )
