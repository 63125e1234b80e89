"""PostgreSQL through an async connection pool, migrated to the current schema on open.

Every statement is awaited (psycopg's async API), so the event loop never waits on the
database. Connections are in autocommit mode; work that must be atomic uses `transaction()`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from bot.state.postgres.migrations import migrate


class PgDatabase:
    """A pool of connections to one PostgreSQL database, shared by every store of a process."""

    def __init__(self, url: str, *, max_connections: int = 10, timeout_s: float = 10.0) -> None:
        self.url = url
        self.schema_version = 0
        self.pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            timeout=timeout_s,  # waiting for a free connection
            open=False,
            kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": 10},
            name="cxr-bot",
        )

    async def open(self) -> PgDatabase:
        """Connect and apply any migration the database lacks (replicas serialise on a lock)."""
        await self.pool.open(wait=True, timeout=30)
        async with self.pool.connection() as conn:
            self.schema_version = await migrate(conn)
        return self

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        await self.pool.open()  # a no-op once open: lets stores be built before the loop runs
        async with self.pool.connection() as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """BEGIN … COMMIT on one pooled connection, rolled back on error."""
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def close(self) -> None:
        await self.pool.close()
