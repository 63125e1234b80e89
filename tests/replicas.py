"""Replicas' views of one database, SQLite or PostgreSQL: the stores each process would build.

The store tests take the `replicas` fixture (tests/conftest.py), parametrised over both
backends, and call it once per replica: each gets its own connections, as separate processes
would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.core.leadership import LeaderStore
from bot.state.leases import LeaseStore
from bot.state.uploads import UploadStore


@dataclass
class Replica:
    uploads: UploadStore
    leases: LeaseStore
    leader: LeaderStore
    db: Any


def sqlite_replica(path: Any) -> tuple[Replica, list[Any]]:
    import asyncio

    from bot.state.leadership import SqliteLeaderStore
    from tests.harness import open_database

    db = open_database(path)
    replica = Replica(UploadStore(db), LeaseStore(db), SqliteLeaderStore(db), db)
    return replica, [lambda: asyncio.to_thread(db.close)]


def postgres_replica(url: str) -> tuple[Replica, list[Any]]:
    import asyncio

    from bot.state.postgres.database import PostgresDatabase
    from bot.state.postgres.db import PgDatabase
    from bot.state.postgres.leadership import PgLeaderStore
    from bot.state.postgres.leases import PgLeaseStore
    from bot.state.postgres.uploads import PgUploadStore
    from tests.harness import off_the_loop

    db = off_the_loop(lambda: PostgresDatabase(url, max_connections=4))
    pool = PgDatabase(url, max_connections=6)
    replica = Replica(PgUploadStore(db, pool), PgLeaseStore(pool), PgLeaderStore(pool), db)
    return replica, [pool.close, lambda: asyncio.to_thread(db.close)]
