"""The SQLite database: one connection in WAL mode, migrated to the current schema on open.

Every statement runs on one dedicated thread, so the event loop never waits on a lock or a slow
disk: async code awaits `run(fn)`, which hands `fn(connection)` to that thread. The synchronous
methods remain for worker threads, start-up code and the CLI; they take the same lock, and
refuse to run on a thread that runs an event loop (`on_the_loop`), so SQL on the loop fails loudly.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from bot.state.migrations import migrate

T = TypeVar("T")


class SqlOnTheLoop(RuntimeError):
    """Synchronous SQL was asked for on the event loop's thread: it would stall the loop while
    the database is locked (await `Database.run` instead)."""


def on_the_loop() -> None:
    """Raise `SqlOnTheLoop` when called on a thread that is running an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise SqlOnTheLoop("synchronous SQL on the event loop; await Database.run(fn) instead")


class Database:
    """A thin wrapper over one `sqlite3` connection in WAL mode, with a thread of its own."""

    def __init__(self, path: Path | str, *, busy_timeout_s: float = 5.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxr-db")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        on_the_loop()
        with self._lock:
            self.schema_version = migrate(self._conn)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` on the database thread; the loop stays free meanwhile."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._locked, fn)

    def _locked(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            return fn(self._conn)

    def execute(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        on_the_loop()
        with self._lock:
            return self._conn.execute(sql, params)

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        on_the_loop()
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        on_the_loop()
        with self._lock:
            return self._conn.execute(sql, params).fetchone()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on error."""
        on_the_loop()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        with self._lock:
            self._conn.close()
