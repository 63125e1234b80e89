"""The stores that replicas coordinate through, for whichever database the settings chose.

SQLite: the `bot.state` stores on the one file. PostgreSQL: native async stores (row locks,
`SKIP LOCKED`, conditional upserts) on a pool of their own, beside the `PostgresDatabase` the
other stores use; `close` shuts that pool.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.core.leadership import LeaderStore
from bot.state.db import Database
from bot.state.leadership import SqliteLeaderStore
from bot.state.leases import LeaseStore
from bot.state.uploads import UploadStore


@dataclass
class CoordinationStores:
    uploads: UploadStore
    leases: LeaseStore
    leader: LeaderStore
    close: Callable[[], Awaitable[None]] | None = None


def coordination_stores(db: Database | Any) -> CoordinationStores:
    if isinstance(db, Database):  # SQLite (psycopg need not be installed)
        return CoordinationStores(UploadStore(db), LeaseStore(db), SqliteLeaderStore(db))
    from bot.state.postgres.db import PgDatabase
    from bot.state.postgres.leadership import PgLeaderStore
    from bot.state.postgres.leases import PgLeaseStore
    from bot.state.postgres.uploads import PgUploadStore

    pool = PgDatabase(db.url)  # migrated already by `db`; opens on first use
    return CoordinationStores(
        PgUploadStore(db, pool), PgLeaseStore(pool), PgLeaderStore(pool), pool.close
    )
