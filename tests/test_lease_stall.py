"""An instance that stalls longer than an upload's lease (a loaded host, a long pause) loses the
upload to another instance, which answers it; when the first wakes up it must not answer too."""

from __future__ import annotations

import asyncio

import pytest

from tests.harness import BotHarness, replies_in_thread
from tests.synthetic import chest_xray, jpeg_bytes
from tests.test_lifecycle_support import LocalModel, no_guard

CHANNEL = "C0CLINIC1"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path) -> dict:
    if request.param == "sqlite":
        return {}
    return {"cxr_database_url": request.getfixturevalue("postgres_url")}


async def test_a_stalled_instance_does_not_answer_what_another_took_over(slack, tmp_path, database):
    def bot() -> BotHarness:
        return BotHarness(
            slack,
            tmp_path / "cxr.db",
            local=LocalModel(),
            guard=no_guard,
            cxr_upload_lease_seconds=1,
            **database,
        )

    stalled = await bot().start()
    gate = asyncio.Event()
    fetch = stalled.services.intake.fetcher.fetch

    async def slow_fetch(ref, max_bytes):
        await gate.wait()
        return await fetch(ref, max_bytes)

    async def no_renewals() -> None:  # its lease rounds stall with it
        return None

    stalled.services.intake.fetcher.fetch = slow_fetch
    stalled.services.intake._renew = no_renewals
    envelope = await stalled.share(CHANNEL, [("a.jpeg", jpeg_bytes(chest_xray(seed=5)))])
    ts = envelope["event"]["ts"]

    other = await bot().start()
    try:
        await slack.wait_for(
            lambda: len(replies_in_thread(slack, CHANNEL, ts)) == 1,
            within=15,
            what="the other instance to take the upload over once the lease lapsed",
        )
        gate.set()  # the stalled instance wakes up with its work done, ready to post
        await stalled.drain()
        assert len(replies_in_thread(slack, CHANNEL, ts)) == 1
    finally:
        gate.set()
        await other.stop()
        await stalled.stop()
