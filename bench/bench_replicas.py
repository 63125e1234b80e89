"""Several replicas on one PostgreSQL: nothing lost or doubled when one dies, time to answer a
burst with one and with three replicas, and how long the lead takes to change hands.

Runs real `cxr-bot` processes in HTTP mode (bundled local model) behind a round-robin balancer
that skips a dead replica, against the local Slack stand-in (redelivery on, on
Slack's schedule: 3 s to acknowledge, retries at once, after 1 and 5 minutes), on
a PostgreSQL server the script starts itself (tests/pgserver.py: Debian's binaries).

  1. kill: 3 replicas, N uploads (default 300) spread over them, one replica SIGKILLed once
     half the burst is answered; counts uploads lost (no reply) and doubled (a reply part
     posted twice), from the replies' metadata, after waiting 1.5 lease times for stragglers;
  2. scale: the same burst with 1 and with 3 replicas, time from the first delivery to the
     last reply (on a 2-core machine this measures overhead, not scaling);
  3. failover: two elector processes (`bot.core.leadership` on PostgreSQL); the leader is
     SIGKILLed and the time until the other is elected is measured (ttl = 3/4 of the poll;
     tests/elector.py).

    nice -n 19 .venv/bin/python bench/bench_replicas.py [../shared/data/originals]
        [--uploads 300] [--rounds 3] [--lease 3] [--poll 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.localslack import LocalSlack  # noqa: E402
from bot.localslack.server import Redelivery  # noqa: E402
from tests.pgserver import PostgresServer  # noqa: E402
from tests.replica_fleet import SIGNING_SECRET, Balancer, ReplicaFleet, reply_parts  # noqa: E402

CHANNEL = "C0BENCH01"


def load(folder: Path) -> list[tuple[str, bytes]]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    if not files:
        raise SystemExit(f"no images under {folder}")
    return [(p.name, p.read_bytes()) for p in files]


async def burst(
    server: PostgresServer,
    images: list[tuple[str, bytes]],
    *,
    replicas: int,
    uploads: int,
    lease_s: float,
    kill_at_half: bool,
) -> dict[str, float]:
    url = server.create_schema(f"b_{uuid.uuid4().hex[:12]}")
    balancer = await Balancer([]).start()
    slack = LocalSlack(
        events_url=f"{balancer.url}/slack/events",
        signing_secret=SIGNING_SECRET,
        # Slack's own schedule: 3 s to acknowledge, retries at once, after 1 min, after 5 min
        # (compressed, an event refused under the burst can run out of retries: not Slack).
        redelivery=Redelivery(),
    )
    await slack.start()
    with tempfile.TemporaryDirectory() as workdir:
        fleet = ReplicaFleet(
            slack.api_url,
            slack.bot_token,
            url,
            Path(workdir),
            extra_env={"CXR_UPLOAD_LEASE_SECONDS": str(lease_s)},
        )
        try:
            balancer.backends[:] = await fleet.start(replicas)
            envelopes = [
                slack.file_share_envelope(CHANNEL, [slack.add_file(*images[i % len(images)])])
                for i in range(uploads)
            ]
            keys = {f"{CHANNEL}:{e['event']['ts']}" for e in envelopes}

            def answered() -> int:
                parts = reply_parts(slack.bot_messages(CHANNEL))
                return len(keys & {key for key, part in parts if part == 1})

            started = time.perf_counter()
            for envelope in envelopes:
                slack.deliver(envelope)
            killed_after = None
            if kill_at_half:
                await slack.wait_for(lambda: answered() >= uploads // 2, within=600)
                killed_after = answered()
                await fleet.kill(fleet.replicas[0])
            with contextlib.suppress(AssertionError):  # counted as lost below
                await slack.wait_for(lambda: answered() == uploads, within=600)
            elapsed = time.perf_counter() - started
            await asyncio.sleep(lease_s * 1.5)  # late duplicates, if any, show up now
            parts = reply_parts(slack.bot_messages(CHANNEL))
            answered_keys = {key for key, part in parts if part == 1}
            logs = "".join(r.log_text() for r in fleet.replicas)
            return {
                "seconds": elapsed,
                "resumed": float(logs.count('"upload.resumed"')),
                "claims_refused": float(logs.count('"upload.claim_failed')),
                "lost": len(keys - answered_keys),
                "doubled": sum(1 for n in parts.values() if n > 1),
                "killed_after": float(killed_after or 0),
                "served_by": float(len(balancer.served)),
            }
        finally:
            await fleet.close()
            await balancer.close()
            await slack.stop()


async def failover(server: PostgresServer, poll_s: float) -> float:
    """Seconds from SIGKILL of the leader to the other elector's election."""
    url = server.create_schema(f"f_{uuid.uuid4().hex[:12]}")
    from bot.state.postgres.db import PgDatabase

    await (await PgDatabase(url, max_connections=1).open()).close()  # migrate once
    ttl = poll_s * 3 / 4
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.elector",
            url,
            name,
            str(ttl),
            stdout=asyncio.subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        for name in ("a", "b")
    ]
    try:
        readers = {asyncio.ensure_future(p.stdout.readline()): p for p in procs}  # type: ignore[union-attr]
        done, _ = await asyncio.wait(readers, return_when=asyncio.FIRST_COMPLETED)
        first = next(iter(done))
        leader = readers.pop(first)
        [pending] = readers
        killed = time.time()
        leader.send_signal(signal.SIGKILL)
        line = (await asyncio.wait_for(pending, poll_s * 10)).decode().split()
        assert line[:2] == ["elected", "2"], line
        return float(line[2]) - killed
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
            await p.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=str(ROOT.parent / "shared/data/originals"))
    parser.add_argument("--uploads", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lease", type=float, default=3.0, help="CXR_UPLOAD_LEASE_SECONDS")
    parser.add_argument("--poll", type=float, default=4.0, help="poll interval (leader ttl 3/4)")
    args = parser.parse_args()
    images = load(Path(args.folder))
    print(
        f"{len(images)} images from {args.folder}; {args.uploads} uploads; "
        f"{os.cpu_count()} cores; lease {args.lease:g} s; {args.rounds} rounds"
    )
    server = PostgresServer.start()
    try:
        kills = []
        for r in range(args.rounds):
            result = await burst(
                server,
                images,
                replicas=3,
                uploads=args.uploads,
                lease_s=args.lease,
                kill_at_half=True,
            )
            kills.append(result)
            print(f"kill round {r + 1}: {result}", flush=True)
        scale: dict[int, list[float]] = {1: [], 3: []}
        for r in range(args.rounds):
            for n in (1, 3):
                result = await burst(
                    server,
                    images,
                    replicas=n,
                    uploads=args.uploads,
                    lease_s=args.lease,
                    kill_at_half=False,
                )
                assert result["lost"] == 0 and result["doubled"] == 0, result
                scale[n].append(result["seconds"])
                print(f"scale round {r + 1}, {n} replica(s): {result}", flush=True)
        failovers = []
        for r in range(args.rounds):
            seconds = await failover(server, args.poll)
            failovers.append(seconds)
            print(f"failover round {r + 1}: {seconds:.2f} s", flush=True)
    finally:
        server.stop()

    one, three = statistics.median(scale[1]), statistics.median(scale[3])
    print()
    print(
        f"kill mid-burst, 3 replicas: lost {[int(k['lost']) for k in kills]}, doubled "
        f"{[int(k['doubled']) for k in kills]}; burst answered in median "
        f"{statistics.median(k['seconds'] for k in kills):.1f} s"
    )
    print(
        f"burst of {args.uploads}: 1 replica {one:.1f} s, 3 replicas {three:.1f} s "
        f"(ratio 3/1: {three / one:.2f}) on {os.cpu_count()} cores"
    )
    print(
        f"leader failover (poll {args.poll:g} s, ttl {args.poll * 3 / 4:g} s): median "
        f"{statistics.median(failovers):.2f} s, max {max(failovers):.2f} s "
        f"(ratio to the poll interval: {statistics.median(failovers) / args.poll:.2f})"
    )


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the replicas and the server
    asyncio.run(main())
