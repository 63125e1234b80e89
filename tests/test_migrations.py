"""The schema upgrades in place: a database from before migrations keeps every row."""

from __future__ import annotations

import json
import sqlite3

import pytest

from bot.state.db import Database
from bot.state.migrations import ADOPT_FIRST_SCHEMA, MIGRATIONS, Migration, migrate, schema_version
from tests.harness import open_database


def first_release_db(path) -> None:
    """A cxr.db as the first release left it: tables made by each store, user_version 0."""
    conn = sqlite3.connect(path)
    conn.executescript(ADOPT_FIRST_SCHEMA)
    conn.execute(
        "INSERT INTO uploads (channel, ts, thread_ts, user, files, received_at)"
        " VALUES ('C1', '1.000001', '1.000001', 'U1', '[]', '2026-01-01T00:00:00+00:00')"
    )
    conn.execute(
        "INSERT INTO lifecycle_operations (kind, version_name, channel, user, started_at, status,"
        " phase) VALUES ('start', 'v1', 'C1', 'U1', '2026-01-01T00:00:00+00:00', 'STARTING',"
        " 'waiting')"
    )
    conn.commit()
    assert schema_version(conn) == 0
    conn.close()


def test_a_first_release_database_upgrades_in_place_and_keeps_its_rows(tmp_path):
    path = tmp_path / "cxr.db"
    first_release_db(path)
    db = Database(path)
    assert db.schema_version == len(MIGRATIONS)
    assert db.one("SELECT state FROM uploads WHERE ts = '1.000001'")["state"] == "pending"
    assert db.one("SELECT phase FROM lifecycle_operations")["phase"] == "waiting"
    db.close()
    again = Database(path)  # opening twice applies nothing twice
    assert again.schema_version == len(MIGRATIONS)
    assert again.one("SELECT COUNT(*) AS n FROM uploads")["n"] == 1
    again.close()


def test_a_failing_migration_leaves_the_database_at_the_last_good_version(tmp_path):
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    steps = [
        Migration(1, "table", "CREATE TABLE t (a INTEGER);"),
        Migration(2, "broken", "ALTER TABLE t ADD COLUMN b INTEGER; ALTER TABLE nope ADD c INT;"),
    ]
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, steps)
    assert schema_version(conn) == 1
    assert [r[1] for r in conn.execute("PRAGMA table_info(t)")] == ["a"]


def test_a_database_newer_than_the_code_is_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer than this code"):
        migrate(conn)


async def test_statements_run_off_the_event_loop(tmp_path):
    import threading

    db = open_database(tmp_path / "cxr.db")
    thread = await db.run(lambda conn: threading.current_thread().name)
    assert thread.startswith("cxr-db")
    assert thread != threading.current_thread().name
    db.close()


async def test_synchronous_sql_on_the_event_loop_is_refused(tmp_path):
    """The event loop never runs SQL: a synchronous call from its thread fails loudly (a
    locked database would stall every request), while `run` and worker threads may."""
    import asyncio

    from bot.state.db import SqlOnTheLoop

    db = open_database(tmp_path / "cxr.db")
    with pytest.raises(SqlOnTheLoop):
        db.query("SELECT 1")
    with pytest.raises(SqlOnTheLoop):
        db.transaction().__enter__()
    assert await db.run(lambda conn: conn.execute("SELECT 1").fetchone()[0]) == 1
    assert (await asyncio.to_thread(db.one, "SELECT 1"))[0] == 1
    await asyncio.to_thread(db.close)


def test_file_names_and_urls_already_stored_are_forgotten_and_the_rows_kept(tmp_path):
    path = tmp_path / "cxr.db"
    conn = sqlite3.connect(path)
    conn.executescript(ADOPT_FIRST_SCHEMA)
    for ts, state in (("1.000001", "answered"), ("1.000002", "pending")):
        files = [
            {
                "file_id": "F1",
                "name": "DOE_JANE_1971.jpeg",
                "mimetype": "image/jpeg",
                "size": 123,
                "url": "http://127.0.0.1:9/files-pri/T1-F1/download/DOE_JANE_1971.jpeg",
            }
        ]
        conn.execute(
            "INSERT INTO uploads (channel, ts, thread_ts, user, files, state, received_at)"
            " VALUES ('C1', ?, ?, 'U1', ?, ?, '2026-01-01T00:00:00+00:00')",
            (ts, ts, json.dumps(files), state),
        )
    conn.commit()
    conn.close()
    Database(path).close()  # opening migrates
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    rows = conn.execute("SELECT ts, state, files FROM uploads ORDER BY ts").fetchall()
    conn.close()
    assert [(r["ts"], r["state"]) for r in rows] == [
        ("1.000001", "answered"),
        ("1.000002", "pending"),
    ]
    for row in rows:
        assert json.loads(row["files"]) == [
            {"file_id": "F1", "name": "", "mimetype": "image/jpeg", "size": 123}
        ]
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("cxr.db*"))
    assert b"DOE_JANE" not in raw  # not even in free pages (secure_delete) or the WAL
