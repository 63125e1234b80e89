"""Leases in SQLite: the `leases` table, one row per leased key.

Every change reads the current row, lets `bot.core.leases` decide, and writes the result in one
`BEGIN IMMEDIATE` transaction, so two processes on one database never both win a lease. Times
are stored as Unix seconds so "expired" is a plain comparison in SQL.

The `*_in(conn, …)` functions run inside a transaction the caller already holds (to claim an
upload and lease it atomically); `LeaseStore` wraps them for async callers on the database's
own thread. An upload, for instance:

    terms = LeaseTerms(timedelta(seconds=30))
    if await leases.acquire(upload_lease(key), owner, clock.now(), terms.ttl):
        ...  # work; every terms.renew_every: `renew([...])`, and stop if it is lost
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from bot.core import leases as decide
from bot.core.leases import Lease
from bot.state.db import Database

T = TypeVar("T")


def read_in(conn: sqlite3.Connection, key: str) -> Lease | None:
    row = conn.execute("SELECT key, owner, expires_at FROM leases WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    return Lease(row[0], row[1], datetime.fromtimestamp(row[2], UTC))


def acquire_in(
    conn: sqlite3.Connection, key: str, owner: str, now: datetime, ttl: timedelta
) -> Lease | None:
    lease = decide.acquire(read_in(conn, key), key, owner, now, ttl)
    if lease is not None:
        conn.execute(
            "INSERT INTO leases (key, owner, expires_at, acquired_at, renewed_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET owner = excluded.owner,"
            " expires_at = excluded.expires_at, acquired_at = excluded.acquired_at,"
            " renewed_at = excluded.renewed_at",
            (key, owner, lease.expires_at.timestamp(), now.timestamp(), now.timestamp()),
        )
    return lease


def renew_in(
    conn: sqlite3.Connection, key: str, owner: str, now: datetime, ttl: timedelta
) -> Lease | None:
    lease = decide.renew(read_in(conn, key), owner, now, ttl)
    if lease is not None:
        conn.execute(
            "UPDATE leases SET expires_at = ?, renewed_at = ? WHERE key = ?",
            (lease.expires_at.timestamp(), now.timestamp(), key),
        )
    return lease


def release_in(conn: sqlite3.Connection, key: str, owner: str) -> bool:
    if not decide.may_release(read_in(conn, key), owner):
        return False
    conn.execute("DELETE FROM leases WHERE key = ?", (key,))
    return True


def in_transaction(conn: sqlite3.Connection, fn: Callable[[], T]) -> T:
    """BEGIN IMMEDIATE, `fn()`, COMMIT (ROLLBACK on error): for use on the database thread."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn()
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


class LeaseStore:
    """Acquire, renew and release leases from async code, off the event loop."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def acquire(self, key: str, owner: str, now: datetime, ttl: timedelta) -> Lease | None:
        return await self._db.run(
            lambda c: in_transaction(c, lambda: acquire_in(c, key, owner, now, ttl))
        )

    async def renew(
        self, keys: Iterable[str], owner: str, now: datetime, ttl: timedelta
    ) -> list[str]:
        """Renew several of our leases in one transaction; returns the keys we lost."""
        keys = list(keys)

        def work(c: sqlite3.Connection) -> list[str]:
            return [k for k in keys if renew_in(c, k, owner, now, ttl) is None]

        return await self._db.run(lambda c: in_transaction(c, lambda: work(c)))

    async def release(self, keys: Iterable[str], owner: str) -> None:
        keys = list(keys)
        await self._db.run(
            lambda c: in_transaction(c, lambda: [release_in(c, k, owner) for k in keys])
        )

    async def holder(self, key: str) -> Lease | None:
        return await self._db.run(lambda c: read_in(c, key))
