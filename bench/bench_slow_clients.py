"""Slow clients against HTTP mode: /healthz and Slack's events while a flood trickles.

Starts the bot's real HTTP server (LocalSlack for the Web API), then a flood of slow clients in
a process of its own (`tests/slow_clients.py`: a third trickle a request head, a third a body,
a third stay silent, each back as soon as it is thrown out), and measures, on fresh connections,
`GET /healthz` and a signed Events API request (a plain message, acknowledged by Bolt):
median and worst latency, and failures. Without a flood, then with one, at two connection caps.

    .venv/bin/python bench/bench_slow_clients.py [--clients 1000] [--probes 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.localslack import LocalSlack  # noqa: E402
from tests.harness import BotHarness  # noqa: E402


async def probe(bot: BotHarness, slack: LocalSlack, probes: int) -> dict[str, list[float | None]]:
    timings: dict[str, list[float | None]] = {"healthz": [], "event": []}
    timeout = aiohttp.ClientTimeout(total=10)
    for i in range(probes):
        start = time.perf_counter()
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(f"{bot.url}/healthz") as response,
            ):
                ok = response.status == 200
        except (aiohttp.ClientError, TimeoutError) as exc:
            ok = False
            timings.setdefault("errors", []).append(type(exc).__name__)
        timings["healthz"].append(time.perf_counter() - start if ok else None)
        event = {
            "type": "message",
            "channel": "C0BENCH01",
            "user": "U1",
            "text": f"hi {i}",
            "ts": slack.next_ts(),
        }
        start = time.perf_counter()
        try:
            status, _ = await asyncio.wait_for(bot.post_event(slack.envelope(event)), 10)
            ok = status == 200
        except (aiohttp.ClientError, TimeoutError) as exc:
            ok = False
            timings.setdefault("errors", []).append(type(exc).__name__)
        timings["event"].append(time.perf_counter() - start if ok else None)
        await asyncio.sleep(0.05)
    return timings


async def run(clients: int, cap: int, probes: int) -> tuple[dict, dict]:
    async with LocalSlack() as slack:
        with tempfile.TemporaryDirectory() as tmp:
            bot = BotHarness(
                slack, Path(tmp) / "cxr.db", local=_NoModel(), http_max_connections=cap
            )
            await bot.start()
            flood = None
            try:
                if clients:
                    port = bot.url.rsplit(":", 1)[1]
                    flood = await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "tests.slow_clients",
                        port,
                        str(clients),
                        "60",
                        cwd=ROOT,
                        stdout=asyncio.subprocess.PIPE,
                    )
                    await asyncio.wait_for(flood.stdout.readline(), 30)
                    await asyncio.sleep(2)
                timings = await probe(bot, slack, probes)
                pool = bot.pool
                stats = {"peak": pool.peak, "limit": pool.limit, **pool.closed_by_reason}
            finally:
                if flood is not None:
                    flood.kill()
                    await flood.wait()
                await bot.stop()
    return timings, stats


class _NoModel:
    max_side = 224
    from bot.core.labels import ModelInfo

    model = ModelInfo("local", "none", "v0")

    async def classify(self, image):  # never called: the probes post no images
        raise AssertionError


def summary(values: list[float | None]) -> str:
    ok = [v for v in values if v is not None]
    failed = len(values) - len(ok)
    if not ok:
        return f"all {failed} failed"
    return (
        f"median {statistics.median(ok) * 1000:.1f} ms, worst {max(ok) * 1000:.1f} ms, "
        f"failed {failed}/{len(values)}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--probes", type=int, default=30)
    args = parser.parse_args()
    for clients, cap in ((0, 1000), (args.clients, 1000), (args.clients, 200)):
        timings, stats = await run(clients, cap, args.probes)
        print(f"flood {clients} clients, cap {cap} (effective {stats['limit']}):")
        print(f"  /healthz:      {summary(timings['healthz'])}")
        print(f"  signed event:  {summary(timings['event'])}")
        print(f"  pool: {stats}; probe errors: {timings.get('errors', [])}")


if __name__ == "__main__":
    asyncio.run(main())
