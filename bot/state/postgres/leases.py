"""Leases in PostgreSQL: each change is one conditional statement, so replicas never both win.

The rules are `bot.core.leases`' (a free key, an expired lease or one's own is acquired; only
the holder renews or releases), said as SQL: an upsert whose `DO UPDATE … WHERE` lets it through
only for an expired lease or the same owner. No table lock, no waiting on other replicas.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from psycopg import AsyncConnection

from bot.core.leases import Lease
from bot.state.leases import LeaseStore
from bot.state.postgres.db import PgDatabase

ACQUIRE = (
    "INSERT INTO leases (key, owner, expires_at, acquired_at, renewed_at)"
    " VALUES (%(key)s, %(owner)s, %(expires)s, %(now)s, %(now)s)"
    " ON CONFLICT (key) DO UPDATE SET owner = EXCLUDED.owner,"
    " expires_at = EXCLUDED.expires_at, acquired_at = EXCLUDED.acquired_at,"
    " renewed_at = EXCLUDED.renewed_at"
    " WHERE leases.owner = EXCLUDED.owner OR leases.expires_at <= %(now)s"
    " RETURNING key"
)


async def acquire_in(
    conn: AsyncConnection, key: str, owner: str, now: datetime, ttl: timedelta
) -> Lease | None:
    """Take or extend the lease within the caller's transaction; None while another holds it."""
    expires = now + ttl
    cursor = await conn.execute(
        ACQUIRE,
        {"key": key, "owner": owner, "expires": expires.timestamp(), "now": now.timestamp()},
    )
    return Lease(key, owner, expires) if await cursor.fetchone() else None


class PgLeaseStore(LeaseStore):
    """`bot.state.leases.LeaseStore` on PostgreSQL's async driver."""

    def __init__(self, db: PgDatabase) -> None:
        self._pg = db

    async def acquire(self, key: str, owner: str, now: datetime, ttl: timedelta) -> Lease | None:
        async with self._pg.connection() as conn:
            return await acquire_in(conn, key, owner, now, ttl)

    async def renew(
        self, keys: Iterable[str], owner: str, now: datetime, ttl: timedelta
    ) -> list[str]:
        """Renew several of our leases in one statement; returns the keys we lost."""
        keys = list(keys)
        async with self._pg.connection() as conn:
            cursor = await conn.execute(
                "UPDATE leases SET expires_at = %s, renewed_at = %s"
                " WHERE key = ANY(%s) AND owner = %s RETURNING key",
                ((now + ttl).timestamp(), now.timestamp(), keys, owner),
            )
            kept = {row["key"] for row in await cursor.fetchall()}
        return [key for key in keys if key not in kept]

    async def release(self, keys: Iterable[str], owner: str) -> None:
        async with self._pg.connection() as conn:
            await conn.execute(
                "DELETE FROM leases WHERE key = ANY(%s) AND owner = %s", (list(keys), owner)
            )

    async def holder(self, key: str) -> Lease | None:
        async with self._pg.connection() as conn:
            cursor = await conn.execute(
                "SELECT key, owner, expires_at FROM leases WHERE key = %s", (key,)
            )
            row = await cursor.fetchone()
        if row is None:
            return None
        return Lease(row["key"], row["owner"], datetime.fromtimestamp(row["expires_at"], UTC))
