"""Leader terms in SQLite: one row per lead, changed only inside `BEGIN IMMEDIATE`, so two
processes on one database file never both win a term (a rolling deploy on one host)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from bot.core import leadership as decide
from bot.core.leadership import Term
from bot.state.db import Database


def _read(conn: sqlite3.Connection, name: str) -> Term | None:
    row = conn.execute(
        "SELECT owner, epoch, expires_at FROM leader_terms WHERE name = ?", (name,)
    ).fetchone()
    if row is None or row[1] == 0:
        return None
    return Term(name, row[0], int(row[1]), datetime.fromtimestamp(row[2], UTC))


def _immediate(conn: sqlite3.Connection, work):
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work()
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


class SqliteLeaderStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(self, name: str, owner: str, now: datetime, ttl: timedelta) -> Term | None:
        def work(conn: sqlite3.Connection) -> Term | None:
            term = decide.claim(_read(conn, name), name, owner, now, ttl)
            if term is not None:
                conn.execute(
                    "INSERT INTO leader_terms (name, owner, epoch, expires_at, acquired_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET"
                    " owner = excluded.owner, epoch = excluded.epoch,"
                    " expires_at = excluded.expires_at, acquired_at = excluded.acquired_at",
                    (name, owner, term.epoch, term.expires_at.timestamp(), now.timestamp()),
                )
            return term

        return await self._db.run(lambda c: _immediate(c, lambda: work(c)))

    async def current(self, name: str) -> Term | None:
        return await self._db.run(lambda c: _read(c, name))

    async def act_once(self, term: Term, key: str, now: datetime) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            if not decide.holds(_read(conn, term.name), term, now):
                return False
            cursor = conn.execute(
                "INSERT OR IGNORE INTO leader_actions (key, name, epoch, owner, at)"
                " VALUES (?, ?, ?, ?, ?)",
                (key, term.name, term.epoch, term.owner, now.timestamp()),
            )
            return cursor.rowcount == 1

        return await self._db.run(lambda c: _immediate(c, lambda: work(c)))

    async def release(self, term: Term) -> None:
        await self._db.run(
            lambda c: c.execute(
                "UPDATE leader_terms SET expires_at = 0 WHERE name = ? AND owner = ? AND epoch = ?",
                (term.name, term.owner, term.epoch),
            )
        )
