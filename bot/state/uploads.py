"""Which uploads have been taken on and answered: the bot's exactly-once memory.

An upload (one chat message with files) is claimed before Slack gets its acknowledgement; a
claim that already exists means a Slack retry, a duplicate delivery or a replay after restart.
Each claimed upload carries a lease (`bot.state.leases`): the instance working on it renews
it, and another instance resumes the upload only once that lease has expired. Claimed but
unanswered uploads are resumed after a restart or a crash, so none is lost.

Everything the event loop calls is async and runs on the database's own thread, one short
transaction each.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from bot.core.leases import UPLOAD_LEASE_PREFIX, upload_lease
from bot.core.ports import ImageRef, Upload
from bot.state.db import Database
from bot.state.leases import acquire_in, in_transaction, release_in


def lease_key(upload: Upload) -> str:
    return upload_lease(upload.key)


class UploadStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # --- the intake's calls (async, off the event loop) -------------------------------------
    async def claim(self, upload: Upload, now: datetime, owner: str, ttl: timedelta) -> str:
        """Record the upload and lease it to `owner`, in one transaction.

        "new" when it was not known; "taken" when it was pending with a lease that is ours or
        has expired (a Slack retry after a failed claim or delivery, or after a crash: some of
        its reply may be out already); "" when it was answered already or another instance
        is answering it.
        """

        def work(conn: sqlite3.Connection) -> str:
            inserted = conn.execute(
                "INSERT OR IGNORE INTO uploads"
                " (channel, ts, thread_ts, user, files, received_at, direct)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    upload.channel,
                    upload.ts,
                    upload.thread_ts,
                    upload.user,
                    json.dumps([stored_ref(ref) for ref in upload.files]),
                    now.isoformat(),
                    int(upload.direct),
                ),
            ).rowcount
            if not inserted:
                row = conn.execute(
                    "SELECT state FROM uploads WHERE channel = ? AND ts = ?",
                    (upload.channel, upload.ts),
                ).fetchone()
                if row is None or row["state"] != "pending":
                    return ""
            if acquire_in(conn, lease_key(upload), owner, now, ttl) is None:
                return ""
            return "new" if inserted else "taken"

        return await self._db.run(lambda c: in_transaction(c, lambda: work(c)))

    async def resumable(self, now: datetime, limit: int = 100) -> list[Upload]:
        """Pending uploads nobody is working on: no lease, or an expired one."""
        rows = await self._db.run(
            lambda c: c.execute(
                "SELECT u.* FROM uploads u LEFT JOIN leases l ON l.key = ? || u.channel || ':' || u.ts"
                " WHERE u.state = 'pending' AND (l.key IS NULL OR l.expires_at <= ?)"
                " ORDER BY u.received_at, u.ts LIMIT ?",
                (UPLOAD_LEASE_PREFIX, now.timestamp(), limit),
            ).fetchall()
        )
        return [upload_from_row(row) for row in rows]

    async def take(self, upload: Upload, now: datetime, owner: str, ttl: timedelta) -> bool:
        """Lease a pending upload to `owner` if it is still pending and nobody else holds it."""

        def work(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT state FROM uploads WHERE channel = ? AND ts = ?",
                (upload.channel, upload.ts),
            ).fetchone()
            if row is None or row["state"] != "pending":
                return False
            return acquire_in(conn, lease_key(upload), owner, now, ttl) is not None

        return await self._db.run(lambda c: in_transaction(c, lambda: work(c)))

    async def record(
        self,
        upload: Upload,
        outcomes: Sequence[tuple[str, str, str | None, str | None]],
        now: datetime,
    ) -> None:
        """Each file's outcome: (file id, outcome code, model kind, model version)."""
        rows = classification_rows(upload, outcomes, now)

        def work(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR REPLACE INTO classifications"
                " (channel, ts, file_id, outcome, model_kind, model_version, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

        await self._db.run(lambda c: in_transaction(c, lambda: work(c)))

    async def mark_answered(self, upload: Upload, now: datetime, owner: str) -> None:
        """Answered: never again, by anyone. The lease is no longer needed."""

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE uploads SET state = 'answered', answered_at = ?"
                " WHERE channel = ? AND ts = ?",
                (now.isoformat(), upload.channel, upload.ts),
            )
            release_in(conn, lease_key(upload), owner)

        await self._db.run(lambda c: in_transaction(c, lambda: work(c)))

    async def abandon(self, channel: str, now: datetime) -> list[Upload]:
        """Give up on a channel's pending uploads (the local shell's, whose files are gone)."""

        def work(conn: sqlite3.Connection) -> list[Upload]:
            rows = conn.execute(
                "SELECT * FROM uploads WHERE state = 'pending' AND channel = ?"
                " ORDER BY received_at, ts",
                (channel,),
            ).fetchall()
            conn.execute(
                "UPDATE uploads SET state = 'abandoned', answered_at = ?"
                " WHERE state = 'pending' AND channel = ?",
                (now.isoformat(), channel),
            )
            return [upload_from_row(row) for row in rows]

        return await self._db.run(lambda c: in_transaction(c, lambda: work(c)))

    # --- reports ------------------------------------------------------------------------------
    async def pending(self) -> list[Upload]:
        rows = await self._db.run(
            lambda c: c.execute(
                "SELECT * FROM uploads WHERE state = 'pending' ORDER BY received_at, ts"
            ).fetchall()
        )
        return [upload_from_row(row) for row in rows]

    async def is_answered(self, channel: str, ts: str) -> bool:
        row = await self._db.run(
            lambda c: c.execute(
                "SELECT state FROM uploads WHERE channel = ? AND ts = ?", (channel, ts)
            ).fetchone()
        )
        return bool(row and row["state"] == "answered")

    async def classified_count(
        self, model_kind: str, since: datetime, until: datetime, model_version: str | None = None
    ) -> int:
        """Images a model kind (one version of it, if given) answered in [since, until): for
        cost per classified image."""
        where, params = _model_filter(model_kind, model_version)
        row = await self._db.run(
            lambda c: c.execute(
                f"SELECT COUNT(*) AS n FROM classifications WHERE {where} AND at >= ? AND at < ?",
                (*params, since.isoformat(), until.isoformat()),
            ).fetchone()
        )
        return int(row["n"]) if row else 0

    async def last_classified_at(
        self, model_kind: str, model_version: str | None = None
    ) -> datetime | None:
        """When a model last answered an image for the bot (an idle signal for the cost guard)."""
        where, params = _model_filter(model_kind, model_version)
        row = await self._db.run(
            lambda c: c.execute(
                f"SELECT MAX(at) AS at FROM classifications WHERE {where}", params
            ).fetchone()
        )
        return datetime.fromisoformat(row["at"]) if row and row["at"] else None


def stored_ref(ref: ImageRef) -> dict[str, object]:
    """What the database keeps of a file: its ID, type and size. Not its name, nor its URL
    (which ends with the name): names can carry a patient's, and a resumed upload gets both
    back from Slack (`files.info`) before it is answered."""
    return {"file_id": ref.file_id, "name": "", "mimetype": ref.mimetype, "size": ref.size}


def upload_from_row(row: Mapping[str, Any] | sqlite3.Row) -> Upload:
    """An upload as either database returns its row (both index by column name)."""
    return Upload(
        channel=row["channel"],
        ts=row["ts"],
        thread_ts=row["thread_ts"],
        user=row["user"],
        files=tuple(ImageRef(**ref) for ref in json.loads(row["files"])),
        direct=bool(row["direct"]),
    )


def _model_filter(model_kind: str, model_version: str | None) -> tuple[str, tuple[str, ...]]:
    """The WHERE clause for one model kind, or one version of it."""
    if model_version is None:
        return "model_kind = ?", (model_kind,)
    return "model_kind = ? AND model_version = ?", (model_kind, model_version)


def classification_rows(
    upload: Upload, outcomes: Sequence[tuple[str, str, str | None, str | None]], now: datetime
) -> list[tuple[str, str, str, str, str | None, str | None, str]]:
    """The classifications table's rows for an upload's outcomes (both databases)."""
    return [
        (upload.channel, upload.ts, file_id, code, kind, version, now.isoformat())
        for file_id, code, kind, version in outcomes
    ]
