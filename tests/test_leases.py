"""Leases: one holder at a time, renewals by the holder only, takeover after expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.core.leases import Lease, LeaseTerms, acquire, may_release, new_owner, renew
from bot.state.db import Database
from bot.state.leases import LeaseStore
from tests.harness import open_database

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)


def test_a_running_lease_keeps_others_out_until_it_expires():
    held = acquire(None, "k", "a", T0, TTL)
    assert held == Lease("k", "a", T0 + TTL)
    assert acquire(held, "k", "b", T0 + timedelta(seconds=29), TTL) is None
    taken = acquire(held, "k", "b", T0 + TTL, TTL)
    assert taken is not None and taken.owner == "b"


def test_only_the_holder_renews_or_releases():
    held = Lease("k", "a", T0 + TTL)
    assert renew(held, "a", T0 + timedelta(seconds=10), TTL) == Lease(
        "k", "a", T0 + timedelta(seconds=40)
    )
    assert renew(held, "b", T0, TTL) is None
    assert renew(None, "a", T0, TTL) is None
    assert may_release(held, "a") and not may_release(held, "b")
    assert LeaseTerms(TTL).renew_every == timedelta(seconds=10)


def test_owner_names_are_unique_per_process_start():
    assert new_owner() != new_owner()


async def test_two_instances_on_one_database_never_both_hold_a_lease(tmp_path):
    first, second = open_database(tmp_path / "cxr.db"), open_database(tmp_path / "cxr.db")
    a, b = LeaseStore(first), LeaseStore(second)
    assert await a.acquire("upload:C1:1.0", "a", T0, TTL) is not None
    assert await b.acquire("upload:C1:1.0", "b", T0 + timedelta(seconds=5), TTL) is None
    assert await a.renew(["upload:C1:1.0"], "a", T0 + timedelta(seconds=20), TTL) == []
    # renewed: still a's at 40 s, b's after 50 s
    assert await b.acquire("upload:C1:1.0", "b", T0 + timedelta(seconds=40), TTL) is None
    assert await b.acquire("upload:C1:1.0", "b", T0 + timedelta(seconds=50), TTL) is not None
    assert await a.renew(["upload:C1:1.0"], "a", T0 + timedelta(seconds=51), TTL) == [
        "upload:C1:1.0"
    ]
    await a.release(["upload:C1:1.0"], "a")  # not a's any more: nothing happens
    assert (await a.holder("upload:C1:1.0")).owner == "b"
    await b.release(["upload:C1:1.0"], "b")
    assert await a.holder("upload:C1:1.0") is None
    first.close()
    second.close()


def test_a_version_1_database_with_pending_uploads_upgrades_in_place(tmp_path):
    import sqlite3

    from bot.state.migrations import ADOPT_FIRST_SCHEMA, MIGRATIONS, Migration, migrate

    path = tmp_path / "cxr.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, [Migration(1, "first", ADOPT_FIRST_SCHEMA)])
    conn.execute(
        "INSERT INTO uploads (channel, ts, thread_ts, user, files, received_at)"
        " VALUES ('C1', '1.000001', '1.000001', 'U1', '[]', '2026-01-01T00:00:00+00:00')"
    )
    conn.close()
    db = Database(path)
    assert db.schema_version == len(MIGRATIONS) >= 2
    row = db.one("SELECT state, direct FROM uploads WHERE ts = '1.000001'")
    assert (row["state"], row["direct"]) == ("pending", 0)
    assert db.one("SELECT COUNT(*) AS n FROM leases")["n"] == 0  # no lease yet: anyone may resume
    db.close()
