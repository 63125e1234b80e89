"""Leader terms in PostgreSQL. A claim locks the lead's row (`FOR UPDATE`); a fenced action
holds it `FOR SHARE` while it checks the epoch and records the action, so no claim can slip in
between the check and the write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from psycopg import AsyncConnection

from bot.core import leadership as decide
from bot.core.leadership import Term
from bot.state.postgres.db import PgDatabase


async def _read(conn: AsyncConnection, name: str, lock: str) -> Term | None:
    cursor = await conn.execute(
        f"SELECT owner, epoch, expires_at FROM leader_terms WHERE name = %s {lock}", (name,)
    )
    row = await cursor.fetchone()
    if row is None or row["epoch"] == 0:
        return None
    return Term(
        name, row["owner"], int(row["epoch"]), datetime.fromtimestamp(row["expires_at"], UTC)
    )


class PgLeaderStore:
    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def claim(self, name: str, owner: str, now: datetime, ttl: timedelta) -> Term | None:
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO leader_terms (name, owner, epoch, expires_at, acquired_at)"
                " VALUES (%s, '', 0, 0, 0) ON CONFLICT (name) DO NOTHING",
                (name,),
            )
            term = decide.claim(await _read(conn, name, "FOR UPDATE"), name, owner, now, ttl)
            if term is not None:
                await conn.execute(
                    "UPDATE leader_terms SET owner = %s, epoch = %s, expires_at = %s,"
                    " acquired_at = %s WHERE name = %s",
                    (owner, term.epoch, term.expires_at.timestamp(), now.timestamp(), name),
                )
            return term

    async def current(self, name: str) -> Term | None:
        async with self._db.connection() as conn:
            return await _read(conn, name, "")

    async def act_once(self, term: Term, key: str, now: datetime) -> bool:
        async with self._db.transaction() as conn:
            if not decide.holds(await _read(conn, term.name, "FOR SHARE"), term, now):
                return False
            cursor = await conn.execute(
                "INSERT INTO leader_actions (key, name, epoch, owner, at)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING",
                (key, term.name, term.epoch, term.owner, now.timestamp()),
            )
            return cursor.rowcount == 1

    async def release(self, term: Term) -> None:
        async with self._db.connection() as conn:
            await conn.execute(
                "UPDATE leader_terms SET expires_at = 0"
                " WHERE name = %s AND owner = %s AND epoch = %s",
                (term.name, term.owner, term.epoch),
            )
