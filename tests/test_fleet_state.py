"""The fleet's state upgrades in place: a cxr.db made by the previous release (schema 1) with
pending uploads, a start in flight and a run on the meter keeps all of it, and learns when the
bot first watched the fleet (so no summary is written for a day before that)."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime

import pytest

from bot.state.db import Database
from bot.state.migrations import ADOPT_FIRST_SCHEMA, MIGRATIONS, schema_version
from bot.state.store import CostGuardStore, OperationStore, RunStore
from bot.state.uploads import UploadStore

ARN = "arn:aws:rekognition:us-east-1:123456789012:project/cxr/version/cxr.v1/1700000000001"


def previous_release_db(path) -> None:
    """What the release before the fleet engine left: schema 1, rows of every kind."""
    conn = sqlite3.connect(path)
    conn.executescript(ADOPT_FIRST_SCHEMA)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO uploads (channel, ts, thread_ts, user, files, received_at)"
        " VALUES ('C1', '1.000001', '1.000001', 'U1', '[]', '2026-01-03T08:00:00+00:00')"
    )
    conn.execute(
        "INSERT INTO lifecycle_operations (kind, version_name, version_arn, channel, user,"
        " started_at, status, phase, data) VALUES ('start', 'cxr.v1', ?, 'C1', 'U1',"
        " '2026-01-04T10:00:00+00:00', 'STARTING', 'following', '{\"min_units\": 1}')",
        (ARN,),
    )
    conn.execute(
        "INSERT INTO model_runs (version_arn, started_at, units, source)"
        " VALUES (?, '2026-01-02T09:00:00+00:00', 1, 'observed')",
        (ARN,),
    )
    conn.execute(
        "INSERT INTO audit_log (at, actor, action, target, result)"
        " VALUES ('2026-01-02T09:00:00+00:00', 'watcher', 'observed:running', 'cxr.v1', 'ok')"
    )
    conn.commit()
    conn.close()


async def test_a_previous_release_database_upgrades_with_its_uploads_operations_and_runs(tmp_path):
    path = tmp_path / "cxr.db"
    previous_release_db(path)
    db = await asyncio.to_thread(Database, path)
    try:
        assert db.schema_version == len(MIGRATIONS) >= 2
        [pending] = await UploadStore(db).pending()
        assert pending.ts == "1.000001"
        [op] = await OperationStore(db).open()
        assert (op.kind, op.version_name, op.status, op.data) == (
            "start",
            "cxr.v1",
            "STARTING",
            {"min_units": 1},
        )
        run = await RunStore(db).current(ARN)
        assert run is not None and run.started_at == datetime(2026, 1, 2, 9, 0, tzinfo=UTC)
        store = CostGuardStore(db)
        assert await store.note_started(datetime(2026, 1, 5, tzinfo=UTC)) == datetime(
            2026, 1, 2, 9, 0, tzinfo=UTC
        )  # its earliest row, kept
    finally:
        await asyncio.to_thread(db.close)


async def test_a_new_database_learns_when_the_bot_first_watched(tmp_path):
    db = await asyncio.to_thread(Database, tmp_path / "cxr.db")
    try:
        store = CostGuardStore(db)
        first = datetime(2026, 1, 5, 9, tzinfo=UTC)
        assert await store.note_started(first) == first
        assert await store.note_started(datetime(2026, 1, 6, tzinfo=UTC)) == first  # kept
    finally:
        await asyncio.to_thread(db.close)
    conn = sqlite3.connect(tmp_path / "cxr.db")
    assert schema_version(conn) == len(MIGRATIONS)
    conn.close()


async def test_a_watch_or_episode_update_takes_only_its_own_fields(tmp_path):
    db = await asyncio.to_thread(Database, tmp_path / "cxr.db")
    try:
        store = CostGuardStore(db)
        seen = datetime(2026, 1, 5, 9, tzinfo=UTC)
        await store.save_watch(ARN, "cxr.v1", "RUNNING", seen)
        await store.update_watch(ARN, stop_failed_at=seen)
        watch = await store.watch(ARN)
        assert watch is not None and watch.stop_failed_at == seen
        with pytest.raises(ValueError, match="not columns"):
            await store.update_watch(ARN, **{"units = 0; --": 1})
        with pytest.raises(ValueError, match="not columns"):
            await store.update_episode(1)
    finally:
        await asyncio.to_thread(db.close)


def test_the_core_imports_no_storage_and_no_slack():
    """The domain is free of SQL and Slack: its nouns and ports are in `bot.core`."""
    import re
    from pathlib import Path

    core = Path(__file__).resolve().parents[1] / "bot" / "core"
    offenders = []
    for path in core.rglob("*.py"):
        text = path.read_text()
        if re.search(
            r"^\s*(from|import) (bot\.state|bot\.slack|slack_sdk|slack_bolt|boto3|sqlite3|psycopg)",
            text,
            re.M,
        ):
            offenders.append(path.relative_to(core).as_posix())
        if "<@" in text or "<#" in text:  # mentions are the Slack module's wording
            offenders.append(path.relative_to(core).as_posix() + " (Slack mention syntax)")
    assert offenders == []
