"""`PostgresDatabase` keeps SQLite's promises to the stores: one writer at a time for
BEGIN IMMEDIATE and `transaction()`, rows by name and position, `lastrowid`, IntegrityError."""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.state.leases import in_transaction
from bot.state.postgres.database import PostgresDatabase


def test_read_modify_write_transactions_of_two_replicas_never_lose_an_update(postgres_url):
    replicas = [PostgresDatabase(postgres_url, max_connections=4) for _ in range(2)]
    replicas[0].execute("CREATE TABLE counter (n INTEGER NOT NULL)")
    replicas[0].execute("INSERT INTO counter (n) VALUES (0)")

    def bump(db: PostgresDatabase) -> None:
        for _ in range(25):
            with db.transaction() as conn:
                n = conn.execute("SELECT n FROM counter").fetchone()["n"]
                conn.execute("UPDATE counter SET n = ?", (n + 1,))

    async def bump_immediate(db: PostgresDatabase) -> None:
        def step(conn) -> None:
            n = conn.execute("SELECT n FROM counter").fetchone()[0]
            conn.execute("UPDATE counter SET n = ?", (n + 1,))

        for _ in range(25):
            await db.run(lambda c: in_transaction(c, lambda: step(c)))

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(bump, db) for db in replicas] + [
            pool.submit(asyncio.run, bump_immediate(db)) for db in replicas
        ]:
            future.result()
    assert replicas[1].one("SELECT n FROM counter")["n"] == 100
    for db in replicas:
        db.close()


def test_rows_lastrowid_and_integrity_errors_as_with_sqlite(postgres_url):
    db = PostgresDatabase(postgres_url)
    cursor = db.execute(
        "INSERT INTO audit_log (at, actor, action, target, result) VALUES (?, ?, ?, ?, ?)",
        ("2026-01-05T09:00:00+00:00", "U1", "start", "cxr.v1", "requested"),
    )
    row = db.one("SELECT id, actor FROM audit_log WHERE id = ?", (cursor.lastrowid,))
    assert row["actor"] == row[1] == "U1" and row["id"] == cursor.lastrowid
    db.execute(
        "INSERT INTO lifecycle_operations (kind, version_name, channel, user, started_at, status,"
        " phase) VALUES ('start', 'cxr.v1', 'C1', 'U1', 'now', 'requested', 'starting')"
    )
    with pytest.raises(sqlite3.IntegrityError):  # one open operation per version
        db.execute(
            "INSERT INTO lifecycle_operations (kind, version_name, channel, user, started_at,"
            " status, phase) VALUES ('stop', 'cxr.v1', 'C1', 'U1', 'now', 'requested', 'x')"
        )
    assert db.path.endswith("/postgres") and "@" not in db.path
    db.close()
