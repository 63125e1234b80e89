"""Uploads in PostgreSQL, claimed by one replica each: the exactly-once path on the async driver.

A claim inserts the upload and leases it in one transaction; a Slack retry that reaches another
replica finds the row (its insert waits for the first claim to commit, then does nothing) and a
lease it cannot take. Resuming takes a pending upload with `SELECT … FOR UPDATE SKIP LOCKED`:
replicas scanning at the same moment skip the rows another is taking instead of queueing on
them, and the lease (expired, or never taken) decides who answers. Reports (counts for the cost
guard) are inherited from the SQLite store and run through `PostgresDatabase`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from bot.core.leases import UPLOAD_LEASE_PREFIX
from bot.core.ports import Upload
from bot.state.postgres.database import PostgresDatabase
from bot.state.postgres.db import PgDatabase
from bot.state.postgres.leases import acquire_in
from bot.state.uploads import (
    UploadStore,
    classification_rows,
    lease_key,
    stored_ref,
    upload_from_row,
)


class PgUploadStore(UploadStore):
    def __init__(self, db: PostgresDatabase, pg: PgDatabase) -> None:
        super().__init__(db)  # type: ignore[arg-type]  # the reports: same SQL, translated
        self._pg = pg

    async def claim(self, upload: Upload, now: datetime, owner: str, ttl: timedelta) -> str:
        """As `UploadStore.claim`: "new", "taken" (pending, lease ours or lapsed) or ""."""
        async with self._pg.transaction() as conn:
            cursor = await conn.execute(
                'INSERT INTO uploads (channel, ts, thread_ts, "user", files, received_at, direct)'
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    upload.channel,
                    upload.ts,
                    upload.thread_ts,
                    upload.user,
                    json.dumps([stored_ref(ref) for ref in upload.files]),
                    now.isoformat(),
                    int(upload.direct),
                ),
            )
            inserted = cursor.rowcount == 1
            if not inserted and not await _pending(conn, upload, "FOR UPDATE"):
                return ""
            if await acquire_in(conn, lease_key(upload), owner, now, ttl) is None:
                return ""
            return "new" if inserted else "taken"

    async def resumable(self, now: datetime, limit: int = 100) -> list[Upload]:
        async with self._pg.connection() as conn:
            cursor = await conn.execute(
                "SELECT u.* FROM uploads u"
                " LEFT JOIN leases l ON l.key = %s || u.channel || ':' || u.ts"
                " WHERE u.state = 'pending' AND (l.key IS NULL OR l.expires_at <= %s)"
                " ORDER BY u.received_at, u.ts LIMIT %s",
                (UPLOAD_LEASE_PREFIX, now.timestamp(), limit),
            )
            return [upload_from_row(row) for row in await cursor.fetchall()]

    async def take(self, upload: Upload, now: datetime, owner: str, ttl: timedelta) -> bool:
        async with self._pg.transaction() as conn:
            if not await _pending(conn, upload, "FOR UPDATE SKIP LOCKED"):
                return False  # answered, or another replica is taking it this very moment
            return await acquire_in(conn, lease_key(upload), owner, now, ttl) is not None

    async def record(
        self,
        upload: Upload,
        outcomes: Sequence[tuple[str, str, str | None, str | None]],
        now: datetime,
    ) -> None:
        rows = classification_rows(upload, outcomes, now)
        async with self._pg.transaction() as conn, conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO classifications"
                " (channel, ts, file_id, outcome, model_kind, model_version, at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (channel, ts, file_id)"
                " DO UPDATE SET outcome = EXCLUDED.outcome, model_kind = EXCLUDED.model_kind,"
                " model_version = EXCLUDED.model_version, at = EXCLUDED.at",
                rows,
            )

    async def mark_answered(self, upload: Upload, now: datetime, owner: str) -> None:
        async with self._pg.transaction() as conn:
            await conn.execute(
                "UPDATE uploads SET state = 'answered', answered_at = %s"
                " WHERE channel = %s AND ts = %s",
                (now.isoformat(), upload.channel, upload.ts),
            )
            await conn.execute(
                "DELETE FROM leases WHERE key = %s AND owner = %s", (lease_key(upload), owner)
            )

    async def abandon(self, channel: str, now: datetime) -> list[Upload]:
        async with self._pg.connection() as conn:
            cursor = await conn.execute(
                "UPDATE uploads SET state = 'abandoned', answered_at = %s"
                " WHERE state = 'pending' AND channel = %s RETURNING *",
                (now.isoformat(), channel),
            )
            rows = await cursor.fetchall()
        rows.sort(key=lambda row: (row["received_at"], row["ts"]))
        return [upload_from_row(row) for row in rows]


async def _pending(conn: Any, upload: Upload, lock: str) -> bool:
    cursor = await conn.execute(
        f"SELECT state FROM uploads WHERE channel = %s AND ts = %s {lock}",
        (upload.channel, upload.ts),
    )
    row = await cursor.fetchone()
    return row is not None and row["state"] == "pending"
