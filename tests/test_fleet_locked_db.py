"""A locked cxr.db does not stall the bot: while another connection holds the write lock for
seconds, the fleet poller (a start in flight, the cost guard metering a running version) waits
on the database's own thread, the event loop keeps answering `/healthz` over HTTP, the tick
that could not write is logged and retried at the next one, and the start completes once the
lock is gone."""

from __future__ import annotations

import asyncio
import logging
import sqlite3

import aiohttp
import pytest

from bot.core.clock import FakeClock
from bot.localslack import LocalSlack
from tests.harness import VERSION_ARN, rekognition_client
from tests.test_lifecycle_slack import ADMIN, GROUP, SERVING, command, harness, posts, press
from tests.test_lifecycle_support import POLL, RekognitionWorld, completed

CANDIDATE = "cxr.2026-02-01"
# Seconds. Any SQL on the loop would stall it for a whole busy timeout (2 s a try) while the
# lock is held; half of that tells the two apart on a loaded machine (typically < 50 ms).
BOUND = 1.0


@pytest.fixture
async def slack():
    async with LocalSlack(usergroups={GROUP: [ADMIN]}) as server:
        yield server


@pytest.fixture
def world():
    return RekognitionWorld(rekognition_client()).add(completed(SERVING), completed(CANDIDATE))


@pytest.fixture
def clock():
    return FakeClock()


class Responsiveness:
    """Measures, while it runs, the event loop's lag and `/healthz` answered over HTTP."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.lag: list[float] = []
        self.health: list[float] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Responsiveness:
        self._tasks = [asyncio.create_task(self._lag()), asyncio.create_task(self._healthz())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(0.02)
            self.lag.append(loop.time() - asked - 0.02)

    async def _healthz(self) -> None:
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as session:
            while True:
                asked = loop.time()
                async with session.get(f"{self.url}/healthz") as response:
                    assert response.status == 200
                    await response.read()
                self.health.append(loop.time() - asked)
                await asyncio.sleep(0.1)


async def until(what: str, check, within: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_write_lock_held_for_seconds_leaves_the_loop_free_and_the_poll_is_retried(
    slack, tmp_path, world, clock, caplog
):
    world.set(SERVING, "RUNNING", MinInferenceUnits=1)  # the guard meters it
    bot = await harness(slack, tmp_path, world, clock).start()
    lifecycle = bot.services.lifecycle
    try:
        await lifecycle.settle()  # the first poll: the running version is on the meter
        assert await bot.services.runs.current(VERSION_ARN) is not None
        proposal = await command(bot, f"start {CANDIDATE}")
        await press(bot, proposal, "lifecycle.start.confirm", user=ADMIN)
        [op] = await bot.services.store.operations.open()
        assert op.version_name == CANDIDATE
        world.set(CANDIDATE, "RUNNING", MinInferenceUnits=1)

        locker = sqlite3.connect(tmp_path / "cxr.db", isolation_level=None, timeout=0)
        caplog.set_level(logging.WARNING, logger="bot")
        async with Responsiveness(bot.url) as probe:
            locker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
            try:
                await clock.advance(POLL)  # the poll: every write waits 2 s, then gives up
                await until(  # the start's step could not write: logged, left open
                    "the start's step to fail on the lock",
                    lambda: any(r.getMessage() == "lifecycle.step_failed" for r in caplog.records),
                )
                await asyncio.sleep(1.0)  # and the lock is held a while longer
            finally:
                locker.execute("ROLLBACK")
            await lifecycle.settle(within=30)
            assert posts(slack) == []  # the start is not reported as running yet
            await clock.advance(POLL)  # the next poll, with the lock gone
            await lifecycle.settle(within=30)

        assert lifecycle.poller.running  # the poller survived the failed tick
        [running] = posts(slack)
        assert running.startswith(f"{CANDIDATE} is running with 1 inference unit")
        assert await bot.services.store.operations.open() == []
        assert await bot.services.runs.current(op.version_arn) is not None
        failed = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert failed and all(  # logged, each for the lock and nothing else
            r.exc_info and "database is locked" in str(r.exc_info[1]) for r in failed
        ), [r.getMessage() for r in failed]
        assert len(probe.health) >= 10 and len(probe.lag) >= 50  # it ran throughout
        assert max(probe.health) < BOUND, max(probe.health)
        assert max(probe.lag) < BOUND, max(probe.lag)
    finally:
        await bot.stop()
