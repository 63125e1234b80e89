"""Several `cxr-bot` processes in HTTP mode on one database, behind a small load balancer:
what the replica wire tests and bench/bench_replicas.py run.

`Balancer` stands in for the reverse proxy of compose.yaml: it sends each request to the next
replica in turn and, like nginx's `proxy_next_upstream error http_502 http_503`, tries another
replica when one refuses the connection or answers 502/503.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
SIGNING_SECRET = "replica-signing-secret"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Replica:
    name: str
    port: int
    process: asyncio.subprocess.Process | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""


@dataclass
class ReplicaFleet:
    """Start, kill and restart `cxr-bot` replicas sharing `database_url`."""

    slack_api_url: str
    bot_token: str
    database_url: str
    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    replicas: list[Replica] = field(default_factory=list)

    def env(self, replica: Replica) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),
            "PYTHONPATH": str(ROOT),
            "SLACK_BOT_TOKEN": self.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": self.slack_api_url,
            "PORT": str(replica.port),
            "HOST": "127.0.0.1",
            "CXR_DATABASE_URL": self.database_url,
            "CXR_LOG_FORMAT": "json",
            "CXR_HEATMAPS": "false",
            **self.extra_env,
        }

    async def start(self, count: int) -> list[Replica]:
        started = [Replica(f"r{len(self.replicas) + i}", free_port()) for i in range(count)]
        self.replicas += started
        await asyncio.gather(*(self.launch(r) for r in started))
        return started

    async def launch(self, replica: Replica, timeout_s: float = 60.0) -> None:
        """Start (or restart) one replica and wait until its /healthz answers."""
        replica.log = self.workdir / f"{replica.name}.log"
        with replica.log.open("ab") as log:
            replica.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                cwd=self.workdir,
                env=self.env(replica),
                stdout=log,
                stderr=log,
            )
        async with aiohttp.ClientSession() as session, asyncio.timeout(timeout_s):
            while True:
                if not replica.alive:
                    raise RuntimeError(f"{replica.name} exited: {replica.log_text()[-2000:]}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{replica.url}/healthz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)

    async def kill(self, replica: Replica) -> None:
        """SIGKILL: no drain, no lease released: the others must pick its work up."""
        assert replica.process is not None
        replica.process.send_signal(signal.SIGKILL)
        await replica.process.wait()

    async def terminate(self, replica: Replica, timeout_s: float = 30.0) -> int:
        """SIGTERM: the replica stops taking work, drains, hands the rest back."""
        assert replica.process is not None
        replica.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(replica.process.wait(), timeout_s)

    async def close(self) -> None:
        for replica in self.replicas:
            if replica.alive:
                assert replica.process is not None
                replica.process.kill()
                await replica.process.wait()


class Balancer:
    """Round-robin over the replicas; the next one on a refused connection, 502 or 503."""

    def __init__(self, backends: list[Replica]) -> None:
        self.backends = backends
        self.served: dict[str, int] = {}  # replica name -> requests it answered 2xx
        self._turn = itertools.count()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> Balancer:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
        start = next(self._turn)
        last: tuple[int, bytes] = (502, b"no replica answered")
        for i in range(len(self.backends)):
            replica = self.backends[(start + i) % len(self.backends)]
            try:
                async with (
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
                    session.request(
                        request.method,
                        f"{replica.url}{request.path_qs}",
                        data=body,
                        headers=headers,
                    ) as response,
                ):
                    payload = await response.read()
                    if response.status in (502, 503):
                        last = (response.status, payload)
                        continue
                    if response.status < 300:
                        self.served[replica.name] = self.served.get(replica.name, 0) + 1
                    return web.Response(status=response.status, body=payload)
            except (aiohttp.ClientConnectionError, TimeoutError):
                continue
        return web.Response(status=last[0], body=last[1])


def reply_parts(messages: list[dict[str, Any]]) -> dict[tuple[str, int], int]:
    """How many times each (upload, part) was posted, from the replies' metadata."""
    counts: dict[tuple[str, int], int] = {}
    for message in messages:
        payload = (message.get("metadata") or {}).get("event_payload") or {}
        if "upload" in payload:
            key = (payload["upload"], int(payload.get("part", 0)))
            counts[key] = counts.get(key, 0) + 1
    return counts
