"""A running bot against LocalSlack, over real HTTP: signed Events API requests in, Web API out.

`BotHarness` builds the same service graph as `cxr-bot` (settings, SQLite, intake, Bolt app,
HTTP transport), with Rekognition reached through botocore (Stubber or a before-send hook).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp
import boto3
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from bot.localslack import LocalSlack
from bot.services import Services
from bot.settings import Settings
from bot.slack.app import build_app, listeners_settled, slack_services, warm_up
from bot.slack.http_guard import ConnectionPool
from bot.slack.transports import start_http
from bot.state.db import Database

T = TypeVar("T")

SIGNING_SECRET = "test-signing-secret"
PROJECT_ARN = "arn:aws:rekognition:us-east-1:123456789012:project/cxr/1700000000000"
VERSION_ARN = (
    "arn:aws:rekognition:us-east-1:123456789012:project/cxr/version/cxr.2026-01-01/1700000000001"
)


def off_the_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run a test's synchronous setup (opening a database, say) on a worker thread when an
    event loop runs here: the databases refuse synchronous SQL on the loop's thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


def open_database(path: Path | str) -> Database:
    return off_the_loop(Database, path)


def rekognition_client(**config: Any) -> Any:
    """A real boto3 Rekognition client pointed at nowhere (tests intercept every request)."""
    from botocore.config import Config

    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing"
    ).client(
        "rekognition",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        config=Config(retries={"mode": "standard", "max_attempts": 5}, **config),
    )


def labels_response(pneumonia: float) -> dict[str, Any]:
    """DetectCustomLabels' answer for a two-class model (confidences in percent)."""
    return {
        "CustomLabels": [
            {"Name": "PNEUMONIA", "Confidence": pneumonia * 100},
            {"Name": "NORMAL", "Confidence": (1 - pneumonia) * 100},
        ]
    }


class BotHarness:
    def __init__(
        self,
        slack: LocalSlack,
        db_path: Path,
        *,
        rekognition: Any = None,
        local: Any = None,
        guard: Any = None,
        clock: Any = None,
        **settings: Any,
    ) -> None:
        self.slack = slack
        values: dict[str, Any] = {
            "slack_bot_token": slack.bot_token,
            "slack_signing_secret": SIGNING_SECRET,
            "slack_api_url": slack.api_url,
            "cxr_db_path": db_path,
            "aws_region": "us-east-1",
            "cxr_log_format": "text",
        }
        if rekognition is not None:
            values |= {
                "cxr_project_arn": PROJECT_ARN,
                "cxr_project_version_arn": VERSION_ARN,
                "cxr_local_fallback": local is not None,
            }
        values |= settings
        self.settings = Settings(_env_file=None, **values)
        self._rekognition = rekognition
        self._local = local
        self._guard = guard
        self._clock = clock
        self.services: Services | None = None
        self._runner: web.AppRunner | None = None
        self.pool: ConnectionPool | None = None  # HTTP connections, for the slow-client tests
        self.url = ""

    async def start(self) -> BotHarness:
        aws = {"rekognition": self._rekognition} if self._rekognition is not None else {}
        self.services, client = await slack_services(
            self.settings,
            self.slack.bot_token,
            self.slack.api_url,
            aws=aws,
            local=self._local,
            guard=self._guard,
            clock=self._clock,
        )
        app = build_app(self.services, client, signing_secret=SIGNING_SECRET)
        await warm_up(app, retry=False)
        self._runner, self.pool = await start_http(
            app, self.services, SIGNING_SECRET, "127.0.0.1", 0
        )
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        await self.services.start()
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
            self._runner = None
        if self.services:
            await self.services.stop()
            self.services = None

    async def crash(self) -> None:
        """Die as under kill -9: no drain, no lease released, nothing more written."""
        import asyncio

        assert self.services is not None
        if self._runner:
            await self._runner.cleanup()
            self._runner = None
        doomed = [*self.services._tasks, *self.services.intake._working.values()]
        for task in doomed:
            task.cancel()
        await asyncio.gather(*doomed, return_exceptions=True)
        self.services.db.close()
        self.services = None

    async def drain_listeners(self) -> None:
        """Wait for Bolt's listeners only (they run after the ack)."""
        await listeners_settled()

    async def drain(self) -> None:
        """Wait for Bolt's listeners (they run after the ack) and then for every upload."""
        assert self.services is not None
        await listeners_settled()
        await self.services.intake.drain()

    # --- requests Slack would send ----------------------------------------------------------
    async def send(
        self,
        body: bytes,
        content_type: str,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        timestamp = int(time.time()) if timestamp is None else timestamp
        signature = signature or SignatureVerifier(SIGNING_SECRET).generate_signature(
            timestamp=str(timestamp), body=body.decode()
        )
        all_headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": str(timestamp),
            "X-Slack-Signature": signature,
            **(headers or {}),
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url}/slack/events", data=body, headers=all_headers) as response,
        ):
            return response.status, await response.text()

    async def post_event(self, envelope: dict[str, Any], **kwargs: Any) -> tuple[int, str]:
        return await self.send(json.dumps(envelope).encode(), "application/json", **kwargs)

    async def post_command(self, fields: dict[str, str], **kwargs: Any) -> tuple[int, str]:
        return await self.send(
            urlencode(fields).encode(), "application/x-www-form-urlencoded", **kwargs
        )

    async def post_action(self, payload: dict[str, Any], **kwargs: Any) -> tuple[int, str]:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return await self.send(body, "application/x-www-form-urlencoded", **kwargs)

    async def share(
        self, channel: str, files: list[tuple[str, bytes]], **kwargs: Any
    ) -> dict[str, Any]:
        """A user posts files in `channel`; returns the event envelope after delivering it."""
        objects = [self.slack.add_file(name, data) for name, data in files]
        envelope = self.slack.file_share_envelope(channel, objects, **kwargs)
        status, _ = await self.post_event(envelope)
        assert status == 200
        return envelope


def replies_in_thread(slack: LocalSlack, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    return [m for m in slack.bot_messages(channel) if m.get("thread_ts") == thread_ts]
