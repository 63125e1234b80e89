"""The leader lease between processes on one PostgreSQL: two racing for it elect one, a killed
leader is replaced, and a leader paused (SIGSTOP) past its term wakes up unable to act."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from bot.state.postgres.db import PgDatabase

ROOT = Path(__file__).resolve().parent.parent
TTL = 1.0


class Elector:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    async def expect(self, prefix: str, within: float = 20.0) -> str:
        async with asyncio.timeout(within):
            while True:
                found = next((line for line in self.lines if line.startswith(prefix)), None)
                if found:
                    self.lines.remove(found)
                    return found
                assert self.process.stdout is not None
                line = (await self.process.stdout.readline()).decode().strip()
                if not line:
                    raise AssertionError(f"elector ended waiting for {prefix!r}")
                self.lines.append(line)


@pytest.fixture
async def electors(postgres_url):
    await (await PgDatabase(postgres_url, max_connections=1).open()).close()  # migrated once
    started: list[Elector] = []

    async def start(name: str, act_after: float | None = None) -> Elector:
        args = [postgres_url, name, str(TTL)] + ([str(act_after)] if act_after else [])
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.elector",
            *args,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE,
        )
        started.append(Elector(process))
        return started[-1]

    yield start
    for elector in started:
        if elector.process.returncode is None:
            elector.process.send_signal(signal.SIGCONT)
            elector.process.kill()
        await elector.process.wait()


async def test_two_racing_elect_one_and_a_killed_leader_is_replaced(electors):
    a, b = await asyncio.gather(electors("a"), electors("b"))
    waits = {asyncio.ensure_future(e.expect("elected 1")): e for e in (a, b)}
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    [won] = done
    leader = waits[won]
    follower = b if leader is a else a
    await asyncio.sleep(TTL * 1.5)  # longer than a term: the follower must not win meanwhile
    [other] = pending
    assert not other.done(), "two leaders in one epoch"
    other.cancel()
    await asyncio.gather(other, return_exceptions=True)
    leader.process.kill()
    await leader.process.wait()
    await follower.expect("elected 2", within=TTL * 10)


async def test_a_leader_paused_past_its_term_wakes_up_unable_to_act(electors):
    a = await electors("a", act_after=2.0)
    await a.expect("elected 1")
    a.process.send_signal(signal.SIGSTOP)  # paused while deciding, before acting
    b = await electors("b", act_after=0.1)
    await b.expect("elected 2", within=TTL * 10)
    assert await b.expect("acted") == "acted stop:cxr.v1:run-1"
    a.process.send_signal(signal.SIGCONT)
    assert await a.expect("refused") == "refused stop:cxr.v1:run-1"
