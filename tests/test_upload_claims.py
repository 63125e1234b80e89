"""Claims across replicas, on SQLite and PostgreSQL: each upload is answered by one replica,
a retry delivered to another is dropped, and a dead replica's uploads are resumed by another
once their leases lapse."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bot.core.ports import ImageRef, Upload

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)
S = timedelta(seconds=1)


def upload(n: int, channel: str = "C0CLINIC1") -> Upload:
    return Upload(
        channel, f"1767600000.{n:06d}", f"1767600000.{n:06d}", "U0CLINIC1", (ImageRef("F1", "a"),)
    )


async def test_a_retry_on_another_replica_is_dropped_and_answered_is_final(replicas):
    a, b = replicas(), replicas()
    first = upload(1)
    assert await a.uploads.claim(first, T0, "a", TTL) == "new"
    assert await b.uploads.claim(first, T0 + S, "b", TTL) == "", "a holds it"
    assert await a.uploads.claim(first, T0 + S, "a", TTL) == "taken", "a's retry (after a 503)"
    await a.uploads.record(first, [("F1", "Normal", "local", "v1")], T0 + 2 * S)
    await a.uploads.mark_answered(first, T0 + 2 * S, "a")
    assert await b.leases.holder("upload:" + first.key) is None
    assert await b.uploads.claim(first, T0 + 2 * TTL, "b", TTL) == "", "answered: never again"
    assert await b.uploads.is_answered(first.channel, first.ts)
    assert await b.uploads.classified_count("local", T0, T0 + TTL) == 1


async def test_simultaneous_deliveries_to_three_replicas_give_one_claim_each(replicas):
    stores = [replicas() for _ in range(3)]
    uploads = [upload(n) for n in range(20)]
    results = await asyncio.gather(
        *(
            store.uploads.claim(item, T0, f"r{i}", TTL)
            for item in uploads
            for i, store in enumerate(stores)
        )
    )
    per_upload = [results[k * 3 : k * 3 + 3] for k in range(len(uploads))]
    assert all(claims.count("new") == 1 and claims.count("") == 2 for claims in per_upload)


async def test_a_dead_replicas_uploads_are_resumed_once_its_leases_lapse(replicas):
    dead, b, c = replicas(), replicas(), replicas()
    left = [upload(n) for n in range(12)]
    for item in left:
        assert await dead.uploads.claim(item, T0, "dead", TTL) == "new"
    assert await b.uploads.resumable(T0 + TTL - S) == [], "leases still running"
    later = T0 + TTL
    found = await b.uploads.resumable(later)
    assert [u.key for u in found] == [u.key for u in left]
    # two survivors resume at once: each upload goes to exactly one of them
    taken = await asyncio.gather(
        *(
            s.uploads.take(item, later, name, TTL)
            for item in found
            for s, name in ((b, "b"), (c, "c"))
        )
    )
    pairs = [taken[k * 2 : k * 2 + 2] for k in range(len(found))]
    assert all(sum(pair) == 1 for pair in pairs), pairs
    assert await c.uploads.resumable(later + S) == []
    # the dead replica comes back (a paused process): its renewals report every lease lost
    lost = await dead.leases.renew(["upload:" + u.key for u in left], "dead", later + S, TTL)
    assert sorted(lost) == sorted("upload:" + u.key for u in left)


async def test_a_lease_renewed_in_time_keeps_the_upload(replicas):
    a, b = replicas(), replicas()
    item = upload(7)
    assert await a.uploads.claim(item, T0, "a", TTL) == "new"
    assert await a.leases.renew(["upload:" + item.key], "a", T0 + 20 * S, TTL) == []
    assert await b.uploads.resumable(T0 + 40 * S) == []
    assert not await b.uploads.take(item, T0 + 40 * S, "b", TTL)
    assert await b.uploads.take(item, T0 + 50 * S, "b", TTL)


async def test_a_stopping_replica_hands_its_uploads_back_at_once(replicas):
    a, b = replicas(), replicas()
    items = [upload(n) for n in range(3)]
    for item in items:
        await a.uploads.claim(item, T0, "a", TTL)
    await a.leases.release(["upload:" + u.key for u in items], "a")
    assert [u.key for u in await b.uploads.resumable(T0 + S)] == [u.key for u in items]


async def test_abandon_gives_up_a_channels_pending_uploads_only(replicas):
    a = replicas()
    await a.uploads.claim(upload(1, "D0SHELL"), T0, "a", TTL)
    await a.uploads.claim(upload(2, "D0SHELL"), T0 + S, "a", TTL)
    await a.uploads.claim(upload(3), T0, "a", TTL)
    gone = await a.uploads.abandon("D0SHELL", T0 + 2 * S)
    assert [u.ts for u in gone] == [upload(1).ts, upload(2).ts]
    assert [u.channel for u in await a.uploads.pending()] == ["C0CLINIC1"]
