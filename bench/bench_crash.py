"""Crash benchmark: `cxr-bot` as a process, LocalSlack in this one, Slack's redelivery on.

Each round starts a fresh stand-in, database and bot (HTTP mode by default: signed deliveries,
so 503s and acks can be told apart; `--transport socket` for Socket Mode, where a refused
claim is an envelope left unacknowledged), posts X-rays as Slack would, does one thing to the bot, and
counts the replies in every upload's thread once the dust has settled (and one lease length
more, so a late double would be seen):

  a  SIGKILL right after a burst of 30 uploads has been acknowledged; restart.
  b  the stand-in SIGKILLs the bot when its first reply post arrives (Slack has it, the bot
     never hears back); restart. Three uploads a round.
  c  another process holds the database's write lock for 8 s while 10 uploads arrive;
     /healthz is polled every 100 ms meanwhile.
  d  a second instance starts on the same database while 16 uploads are queued in the first
     (the stand-in holds the first one's downloads until the second answers /healthz).
  e  the disk is full for 30 s while 10 uploads arrive: `efbig` as a file-size limit on the
     bot process (RLIMIT_FSIZE), `enospc` as a really full filesystem (a 6 MiB tmpfs; needs
     root, skipped otherwise).

Goal: 0 lost, 0 doubled in every round; ack p99 < 100 ms without an external lock; with the
lock held, /healthz < 200 ms and 503s counted apart from acks.

    .venv/bin/python bench/bench_crash.py [--rounds 10] [--only a,b,c,d,efbig,enospc]
        [--transport http|socket]

Slack's retry schedule is compressed 5x (retries about at once, after 12 s, after 60 s; the
3 s acknowledgement deadline is kept) and uploads are leased for 5 s (default 30 s), so a
round takes seconds, not minutes. Images are synthetic chest X-rays (400x400), classified by
the bundled model.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.localslack import LocalSlack  # noqa: E402
from bot.localslack.server import Delivery, Redelivery  # noqa: E402
from tests.synthetic import chest_xray, jpeg_bytes  # noqa: E402

SECRET = "bench-secret"
CHANNEL = "C0CRASH01"
SCHEDULE = Redelivery(ack_timeout_s=3.0, delays=(0.0, 12.0, 60.0))
LEASE_S = 5
TRANSPORT = "http"  # or "socket" (--transport)
SETTLE_S = 150.0  # longest a round waits for its replies (the last retry comes at ~75 s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


class Bot:
    """One `cxr-bot` process in HTTP mode; its stderr goes to a log file through a pipe (a
    file-size limit on the process must not hit its own log)."""

    def __init__(self, slack: LocalSlack, db: Path, log: Path) -> None:
        self.slack, self.db, self.log = slack, db, log
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Bot:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.db.parent),
            "PYTHONPATH": str(ROOT),
            "SLACK_BOT_TOKEN": self.slack.bot_token,
            **(
                {"SLACK_APP_TOKEN": self.slack.app_token}
                if TRANSPORT == "socket"
                else {"SLACK_SIGNING_SECRET": SECRET}
            ),
            "SLACK_API_URL": self.slack.api_url,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "CXR_DB_PATH": str(self.db),
            "CXR_UPLOAD_LEASE_SECONDS": str(LEASE_S),
            "CXR_HEATMAPS": "false",
            "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        }
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            cwd=self.db.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._pump = asyncio.create_task(self._copy_log())
        await self.healthy()
        return self

    async def _copy_log(self) -> None:
        assert self.proc and self.proc.stderr
        with self.log.open("ab") as out:
            while line := await self.proc.stderr.readline():
                out.write(line)

    async def healthy(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(f"{self.url}/healthz", timeout=1) as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"cxr-bot never became healthy; see {self.log}")

    def kill(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.kill()

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
        if self.proc:
            await self.proc.wait()
        if self._pump:
            await self._pump


@dataclass
class Round:
    scenario: str
    uploads: int = 0
    lost: int = 0
    doubled: int = 0
    acks: list[float] = field(default_factory=list)  # seconds, deliveries answered 2xx
    refused: int = 0  # deliveries answered 503 (Slack retries them)
    unanswered: int = 0  # deliveries that got no answer in time (Slack retries them)
    health: list[float] = field(default_factory=list)  # /healthz latencies, seconds
    seconds: float = 0.0


class World:
    """One round's stand-in, folder and bots."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.slack = LocalSlack(redelivery=SCHEDULE, signing_secret=SECRET)
        self.db = workdir / "cxr.db"
        self.bots: list[Bot] = []
        self.deliveries: list[Delivery] = []
        self.image = jpeg_bytes(chest_xray(seed=5, size=(400, 400)))

    async def __aenter__(self) -> World:
        await self.slack.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for bot in self.bots:
            await bot.stop()
        await self.slack.stop()

    async def bot(self, db: Path | None = None) -> Bot:
        bot = await Bot(self.slack, db or self.db, self.workdir / "bot.log").start()
        self.bots.append(bot)
        return bot

    def aim(self, bot: Bot) -> None:
        """HTTP: Slack's Request URL points at this bot. Socket Mode: every connected bot
        gets envelopes (one each, round-robin)."""
        self.slack.events_url = f"{bot.url}/slack/events" if TRANSPORT == "http" else None

    def post(self, n: int) -> list[Delivery]:
        """n users post one X-ray each, at once."""
        batch = []
        for i in range(n):
            file = self.slack.add_file(f"xray{len(self.deliveries) + i}.jpeg", self.image)
            batch.append(self.slack.deliver(self.slack.file_share_envelope(CHANNEL, [file])))
        self.deliveries += batch
        return batch

    def replies(self, delivery: Delivery) -> int:
        ts = delivery.body["event"]["ts"]
        return sum(1 for m in self.slack.bot_messages(CHANNEL) if m.get("thread_ts") == ts)

    async def settle(self, within: float = SETTLE_S) -> None:
        """Until every upload has a reply (or `within` passes), then one lease length more."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if all(self.replies(d) for d in self.deliveries):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(LEASE_S + 2)

    def score(self, result: Round) -> Round:
        counts = [self.replies(d) for d in self.deliveries]
        result.uploads = len(counts)
        result.lost = sum(1 for c in counts if c == 0)
        result.doubled = sum(1 for c in counts if c > 1)
        for delivery in self.deliveries:
            for attempt in delivery.attempts:
                if attempt.status is not None and 200 <= attempt.status < 300:
                    result.acks.append(attempt.latency or 0.0)
                elif attempt.status == 503:
                    result.refused += 1
                elif attempt.status is None:
                    result.unanswered += 1
        return result


async def all_acked(batch: list[Delivery], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not all(d.acked for d in batch):
        if time.monotonic() > deadline:
            raise RuntimeError("the burst was not acknowledged")
        await asyncio.sleep(0.005)


# --- the scenarios ------------------------------------------------------------------------
async def scenario_a(world: World, result: Round) -> None:
    bot = await world.bot()
    world.aim(bot)
    batch = world.post(30)
    await all_acked(batch)
    bot.kill()  # right after the last ack
    await bot.stop()
    world.aim(await world.bot())
    await world.settle()


async def scenario_b(world: World, result: Round) -> None:
    bot = await world.bot()
    world.aim(bot)

    def kill_on_first_reply(call, body) -> None:
        if call.method == "chat.postMessage" and body.get("ok") and bot.proc:
            os.kill(bot.proc.pid, signal.SIGKILL)  # Slack has the reply; the bot never hears
            world.slack.listeners.remove(kill_on_first_reply)

    world.slack.listeners.append(kill_on_first_reply)
    world.post(3)
    assert bot.proc is not None
    await bot.proc.wait()  # killed by the stand-in
    await bot.stop()
    world.aim(await world.bot())
    await world.settle()


async def scenario_c(world: World, result: Round) -> None:
    bot = await world.bot()
    world.aim(bot)
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(8)\n"
        "c.execute('ROLLBACK')",
        str(world.db),
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None
    await holder.stdout.readline()  # the lock is held from here
    polling = asyncio.create_task(poll_health(bot, result, lambda: holder.returncode is not None))
    world.post(10)
    await holder.wait()
    await polling
    await world.settle()


async def poll_health(bot: Bot, result: Round, done: Callable[[], bool]) -> None:
    async with aiohttp.ClientSession() as session:
        while not done():
            started = time.monotonic()
            try:
                async with session.get(f"{bot.url}/healthz", timeout=5) as response:
                    await response.read()
                result.health.append(time.monotonic() - started)
            except (aiohttp.ClientError, TimeoutError):
                result.health.append(float("inf"))
            await asyncio.sleep(0.1)


async def scenario_d(world: World, result: Round) -> None:
    first = await world.bot()
    world.aim(first)
    world.slack.download_gate = asyncio.Event()
    await all_acked(world.post(16))
    await world.bot()  # the new release, on the same database
    world.slack.download_gate.set()
    await world.settle()


async def full_disk(world: World, fill: Callable[[], Awaitable[None]], clear) -> None:
    bot = await world.bot()
    world.aim(bot)
    world.post(3)
    await all_acked(world.deliveries)
    await fill()
    try:
        for _ in range(5):  # ten uploads spread over the first 10 s of the 30 s
            world.post(2)
            await asyncio.sleep(2)
        await asyncio.sleep(20)
    finally:
        clear()
    await world.settle()


async def scenario_efbig(world: World, result: Round) -> None:
    bot_holder: list[Bot] = []

    async def fill() -> None:
        bot_holder.append(world.bots[-1])
        pid = world.bots[-1].proc.pid  # type: ignore[union-attr]
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))

    def clear() -> None:
        pid = bot_holder[0].proc.pid  # type: ignore[union-attr]
        limits = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, limits)

    await full_disk(world, fill, clear)


async def scenario_enospc(world: World, result: Round) -> None:
    mount = world.workdir / "small"
    mount.mkdir()
    await command("mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount))
    world.db = mount / "cxr.db"
    filler = mount / "filler"

    async def fill() -> None:
        with filler.open("wb") as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 65536)
                out.flush()

    def clear() -> None:
        filler.unlink(missing_ok=True)

    try:
        await full_disk(world, fill, clear)
        for bot in world.bots:
            await bot.stop()
        world.bots.clear()
    finally:
        await command("umount", "-l", str(mount))


async def command(*argv: str) -> None:
    process = await asyncio.create_subprocess_exec(*argv)
    if await process.wait():
        raise RuntimeError(f"{argv[0]} failed")


SCENARIOS: dict[str, Callable[[World, Round], Awaitable[None]]] = {
    "a": scenario_a,
    "b": scenario_b,
    "c": scenario_c,
    "d": scenario_d,
    "efbig": scenario_efbig,
    "enospc": scenario_enospc,
}


async def run(rounds: int, only: list[str], keep: Path | None) -> dict[str, list[Round]]:
    results: dict[str, list[Round]] = {name: [] for name in only}
    for name in only:
        if name == "enospc" and os.geteuid() != 0:
            print("enospc: skipped (mounting a small tmpfs needs root)")
            continue
        for number in range(rounds):
            workdir = Path(tempfile.mkdtemp(prefix=f"crash-{name}-", dir=keep))
            result = Round(name)
            started = time.monotonic()
            async with World(workdir) as world:
                await SCENARIOS[name](world, result)
                world.score(result)
            result.seconds = time.monotonic() - started
            results[name].append(result)
            print(
                f"{name} round {number + 1}: {result.uploads} uploads, lost {result.lost},"
                f" doubled {result.doubled}, 503s {result.refused}, unanswered deliveries"
                f" {result.unanswered}, ack p99 {percentile(result.acks, 0.99) * 1000:.1f} ms,"
                f" {result.seconds:.0f} s",
                flush=True,
            )
            if keep is None and result.lost == 0 and result.doubled == 0:
                shutil.rmtree(workdir, ignore_errors=True)
    return results


def report(results: dict[str, list[Round]]) -> None:
    print()
    print(
        "| round | rounds | uploads | lost | doubled | ack median | ack p99 | 503s |"
        " not answered in 3 s | /healthz under the lock: median / p99 / max |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, rounds in results.items():
        if not rounds:
            continue
        acks = [a * 1000 for r in rounds for a in r.acks]
        health = [h * 1000 for r in rounds for h in r.health]
        healthz = (
            f"{statistics.median(health):.0f} / {percentile(health, 0.99):.0f} /"
            f" {max(health):.0f} ms ({len(health)} polls)"
            if health
            else "–"
        )
        print(
            f"| {name} | {len(rounds)} | {sum(r.uploads for r in rounds)} |"
            f" {sum(r.lost for r in rounds)} | {sum(r.doubled for r in rounds)} |"
            f" {statistics.median(acks):.1f} ms | {percentile(acks, 0.99):.1f} ms |"
            f" {sum(r.refused for r in rounds)} | {sum(r.unanswered for r in rounds)} |"
            f" {healthz} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--only", default="a,b,c,d,efbig,enospc")
    parser.add_argument("--keep", type=Path, help="keep every round's folder (logs, db) here")
    parser.add_argument("--transport", choices=("http", "socket"), default="http")
    args = parser.parse_args()
    global TRANSPORT
    TRANSPORT = args.transport
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown rounds: {', '.join(sorted(unknown))}")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    report(asyncio.run(run(args.rounds, only, args.keep)))


if __name__ == "__main__":
    main()
