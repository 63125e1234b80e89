"""Core-loop overhead: Slack event in, verdict posted, with a classifier that answers at once.

Measures, on loopback with LocalSlack and the bot's real HTTP endpoint (signed requests):
  1. event-to-reply overhead per image for real originals, one at a time (median, p95):
     signature check, ack, claim, download, decode, X-ray guard, reply build and post;
  2. ack latency of the HTTP endpoint while a burst of 100 images is being processed;
  3. the burst: all 100 answered, none twice, and the process's peak RSS.

    .venv/bin/python bench/bench_core_loop.py [../shared/data/originals] [--side 384]
        [--classifier instant|local]

`--side` is the decode size the classifier asks for (384: the bundled model; 1024: the
Rekognition adapter). `--classifier local` runs the bundled ONNX model instead, for the
end-to-end figure with a real classifier.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from slack_sdk.signature import SignatureVerifier

from bot.core.labels import Label, ModelInfo, Prediction
from bot.localslack import LocalSlack
from bot.settings import Settings
from bot.slack.app import build_app, listeners_settled, slack_services
from bot.slack.transports import start_site

SECRET = "bench-secret"
VERIFIER = SignatureVerifier(SECRET)
CHANNEL = "C0BENCH01"


class InstantClassifier:
    """Answers at once: what is left is the bot's own overhead."""

    def __init__(self, side: int) -> None:
        self.max_side = side
        self.model = ModelInfo("local", "instant", "bench")

    async def classify(self, image):
        return Prediction({Label.NORMAL: 0.9, Label.PNEUMONIA: 0.1}, self.model)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load(folder: Path) -> list[tuple[str, bytes]]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    if not files:
        raise SystemExit(f"no images under {folder}")
    return [(p.name, p.read_bytes()) for p in files]


async def main(
    folder: Path, blobs: list[tuple[str, bytes]], side: int, burst: int, classifier: str
) -> None:
    slack = await LocalSlack().start()
    posted: dict[str, float] = {}
    replies: dict[str, int] = {}
    changed = asyncio.Event()

    def on_call(call, result):
        if call.method == "chat.postMessage" and result.get("ok"):
            thread = call.params.get("thread_ts")
            posted.setdefault(thread, time.perf_counter())
            replies[thread] = replies.get(thread, 0) + 1
            changed.set()

    slack.listeners.append(on_call)
    tmp = tempfile.TemporaryDirectory()
    settings = Settings(
        _env_file=None,
        slack_bot_token=slack.bot_token,
        slack_signing_secret=SECRET,
        slack_api_url=slack.api_url,
        cxr_db_path=Path(tmp.name) / "bench.db",
        cxr_log_level="WARNING",
    )
    services, client = await slack_services(
        settings,
        slack.bot_token,
        slack.api_url,
        local=InstantClassifier(side) if classifier == "instant" else None,
    )
    side = services.router.max_side
    app = build_app(services, client, signing_secret=SECRET)
    runner = await start_site(app.web_app(path="/slack/events"), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    session = aiohttp.ClientSession()

    async def deliver(name: str, data: bytes) -> tuple[str, float, float]:
        envelope = slack.file_share_envelope(CHANNEL, [slack.add_file(name, data)])
        sent = time.perf_counter()
        await post_signed(session, url, json.dumps(envelope))
        return envelope["event"]["ts"], sent, time.perf_counter() - sent

    # warm-up (imports, first connections)
    ts, _, _ = await deliver(*blobs[0])
    await services.intake.drain()

    # 1. one at a time
    overhead = []
    for name, data in blobs:
        ts, sent, _ = await deliver(name, data)
        await services.intake.drain()
        while ts not in posted:
            changed.clear()
            await changed.wait()
        overhead.append((posted[ts] - sent) * 1000)

    # 2 + 3. a burst posted at once, from another process (as Slack would: the load
    # generator must not share the bot's event loop)
    burst_blobs = [blobs[i % len(blobs)] for i in range(burst)]
    bodies = []
    for name, data in burst_blobs:
        envelope = slack.file_share_envelope(CHANNEL, [slack.add_file(name, data)])
        bodies.append(json.dumps(envelope))
    threads = [json.loads(b)["event"]["ts"] for b in bodies]
    spool = Path(tmp.name) / "burst.json"
    await asyncio.to_thread(spool.write_text, json.dumps(bodies))
    start = time.perf_counter()
    poster = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--post", url, str(spool), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await poster.communicate()
    acks = json.loads(out)
    await listeners_settled()
    await services.intake.drain()
    elapsed = time.perf_counter() - start
    answered = sum(1 for t in threads if replies.get(t, 0) >= 1)
    doubled = sum(1 for t in threads if replies.get(t, 0) > 1)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    sizes = [len(d) for _, d in blobs]
    print(
        f"images: {len(blobs)} originals from {folder} ({min(sizes) // 1024}-{max(sizes) // 1024} KB)"
    )
    print(
        f"classifier: {services.router.model.describe()}, decode side {side} px, "
        f"concurrency {settings.cxr_concurrency}"
    )
    print(
        f"event-to-reply {'overhead' if classifier == 'instant' else 'time'}: median {statistics.median(overhead):.1f} ms, "
        f"p95 {percentile(overhead, 0.95):.1f} ms, max {max(overhead):.1f} ms "
        f"(goal: median < 60 ms, p95 < 150 ms; median/goal {statistics.median(overhead) / 60:.2f})"
    )
    print(
        f"burst of {burst}: answered {answered}/{burst}, answered twice {doubled}, "
        f"all done in {elapsed:.2f} s"
    )
    print(
        f"ack latency under the burst: median {statistics.median(acks):.1f} ms, "
        f"p99 {percentile(acks, 0.99):.1f} ms (goal: p99 < 100 ms; p99/goal "
        f"{percentile(acks, 0.99) / 100:.2f})"
    )
    print(f"peak RSS (bot + fake Slack in one process): {peak_mb:.0f} MB (goal < 300 MB)")

    await session.close()
    await runner.cleanup()
    await services.stop()
    await slack.stop()
    tmp.cleanup()


async def post_signed(session: aiohttp.ClientSession, url: str, body: str) -> None:
    """POST an Events API body signed as Slack signs it; the bot must answer 200."""
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": VERIFIER.generate_signature(timestamp=timestamp, body=body),
    }
    async with session.post(url, data=body, headers=headers) as response:
        assert response.status == 200, response.status


async def post_burst(url: str, bodies: list[str]) -> None:
    """Child process: post every body at once, signed, and print the ack latencies (ms)."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(body: str) -> float:
            sent = time.perf_counter()
            await post_signed(session, url, body)
            return (time.perf_counter() - sent) * 1000

        latencies = await asyncio.gather(*(one(b) for b in bodies))
    print(json.dumps(latencies))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--post"]:
        asyncio.run(post_burst(sys.argv[2], json.loads(Path(sys.argv[3]).read_text())))
        raise SystemExit(0)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("folder", nargs="?", default="../shared/data/originals", type=Path)
    parser.add_argument("--side", type=int, default=384, help="classifier's max_side")
    parser.add_argument("--classifier", choices=["instant", "local"], default="instant")
    parser.add_argument("--burst", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.folder, load(args.folder), args.side, args.burst, args.classifier))
