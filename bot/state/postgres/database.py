"""The SQLite `Database`'s interface, served by PostgreSQL: what lets every store run on either.

A pool of synchronous connections (autocommit). `run(fn)` hands `fn` a connection of its own on
a worker thread, so async callers never block the loop; the synchronous methods serve start-up
code and worker threads and, as with SQLite, refuse to run on the event loop. Statements are translated from the stores' SQLite
dialect by `bot.state.postgres.dialect`, and rows read by name or by position like
`sqlite3.Row`.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psycopg
from psycopg_pool import ConnectionPool

from bot.state.db import on_the_loop
from bot.state.postgres.dialect import SchemaFacts, translate
from bot.state.postgres.migrations import migrate_sync

T = TypeVar("T")
# SQLite lets one writer in at a time (BEGIN IMMEDIATE); this lock gives the stores the same.
WRITER_LOCK = 0x6378_7277_7269_7465


class Row(tuple):
    """A result row readable as `row["name"]` and as `row[0]`, like `sqlite3.Row`."""

    _names: dict[str, int]

    def __new__(cls, values: Sequence[Any], names: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return super().__getitem__(self._names[key])
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: psycopg.Cursor[Any]) -> Callable[[Sequence[Any]], Row]:
    names = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, names)


class Cursor:
    """The part of `sqlite3.Cursor` the stores use: rows, `rowcount`, `lastrowid`."""

    def __init__(self, rows: list[Row], rowcount: int, lastrowid: int | None) -> None:
        self._rows, self.rowcount, self.lastrowid = rows, rowcount, lastrowid

    def fetchone(self) -> Row | None:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[Row]:
        rows, self._rows = self._rows, []
        return rows

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())


class Connection:
    """One pooled PostgreSQL connection speaking the stores' SQLite dialect."""

    def __init__(self, conn: psycopg.Connection[Any], facts: SchemaFacts) -> None:
        self._conn, self._facts = conn, facts

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Cursor:
        translated = translate(sql, self._facts)
        cursor = self._conn.cursor(row_factory=_row_factory)
        try:
            cursor.execute(translated.sql, params)  # always parsed: %% means %
            if translated.writer_lock:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK,))
        except psycopg.IntegrityError as exc:  # the stores catch SQLite's kind
            raise sqlite3.IntegrityError(str(exc)) from exc
        rows = cursor.fetchall() if cursor.description else []
        lastrowid = rows[0][0] if translated.returns_id and rows else None
        return Cursor([] if translated.returns_id else rows, cursor.rowcount, lastrowid)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Cursor:
        translated = translate(sql, self._facts)
        with self._conn.cursor() as cursor:
            cursor.executemany(translated.sql, rows)
            return Cursor([], cursor.rowcount, None)


class PostgresDatabase:
    """`bot.state.db.Database` for PostgreSQL (`CXR_DATABASE_URL`)."""

    def __init__(self, url: str, *, max_connections: int = 8, timeout_s: float = 10.0) -> None:
        on_the_loop()
        parts = urlsplit(url)
        self.path = f"{parts.hostname}:{parts.port or 5432}{parts.path}"  # no password in logs
        self.url = url
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            timeout=timeout_s,
            kwargs={"autocommit": True, "connect_timeout": 10},
            name="cxr-bot-sync",
            open=True,
        )
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="cxr-pg")
        with self._pool.connection() as conn:
            self.schema_version = migrate_sync(conn)
            self.facts = _schema_facts(conn)

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn(connection)` on a worker thread with a connection of its own."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._with_connection, fn)

    def _with_connection(self, fn: Callable[[Connection], T]) -> T:
        with self._pool.connection() as conn:
            return fn(Connection(conn, self.facts))

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Cursor:
        on_the_loop()
        return self._with_connection(lambda c: c.execute(sql, params))

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        return self.execute(sql, params).fetchall()

    def one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Row | None:
        return self.execute(sql, params).fetchone()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """BEGIN IMMEDIATE … COMMIT, as SQLite's: one writer at a time, rolled back on error."""
        on_the_loop()
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK,))
            yield Connection(conn, self.facts)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._pool.close()


def _schema_facts(conn: psycopg.Connection[Any]) -> SchemaFacts:
    keys: dict[str, list[str]] = {}
    for table, column in conn.execute(
        "SELECT tc.table_name, kcu.column_name FROM information_schema.table_constraints tc"
        " JOIN information_schema.key_column_usage kcu"
        " ON tc.constraint_name = kcu.constraint_name AND tc.table_schema = kcu.table_schema"
        " WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = current_schema()"
        " ORDER BY tc.table_name, kcu.ordinal_position"
    ):
        keys.setdefault(table, []).append(column)
    identity = {
        table
        for (table,) in conn.execute(
            "SELECT table_name FROM information_schema.columns WHERE table_schema ="
            " current_schema() AND column_name = 'id' AND is_identity = 'YES'"
        )
    }
    return SchemaFacts({t: tuple(c) for t, c in keys.items()}, frozenset(identity))
