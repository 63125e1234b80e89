"""Serving the Bolt app: HTTP (Events API behind a load balancer) or Socket Mode.

Both serve `GET /healthz` on `PORT`; in Socket Mode it reports whether the socket is up. In HTTP
mode Slack's requests pass `bot.slack.http_guard` first: size, deadlines and signature are
checked on the raw bytes before Bolt parses anything.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest

from bot import __version__
from bot.services import Services
from bot.settings import Settings
from bot.slack.http_guard import (
    ConnectionPool,
    GuardedSite,
    connection_limit,
    connection_middleware,
    mark_answering,
    quiet_malformed_requests,
)
from bot.slack.signatures import check_signature, now

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


def health_handler(
    services: Services, transport: str, connected: Callable[[], Awaitable[bool]] | None = None
) -> Callable[[web.Request], Any]:
    async def healthz(request: web.Request) -> web.Response:
        up = await connected() if connected else True
        body = {
            "status": "ok" if up else "disconnected",
            "transport": transport,
            "version": __version__,
            "model": services.router.model.describe(),
            "uploads_in_flight": services.intake.in_flight,
        }
        if connected:
            body["socket_connected"] = up
        return web.json_response(body, status=200 if up else 503)

    return healthz


async def start_site(web_app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def _plain(status: int, text: str, *, close: bool = False) -> web.Response:
    response = web.Response(status=status, text=text, headers={"X-Slack-No-Retry": "1"})
    if close:
        response.force_close()
    return response


class RejectionLog:
    """One `http.rejected` line per reason a second at most, with how many were left out: a
    flood of junk must not become a flood of log lines."""

    def __init__(self, every_s: float = 1.0) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def __call__(self, reason: str, status: int) -> None:
        now_s = time.monotonic()
        if now_s - self._last.get(reason, -self.every_s) < self.every_s:
            self._left_out[reason] = self._left_out.get(reason, 0) + 1
            return
        self._last[reason] = now_s
        left_out = self._left_out.pop(reason, 0)
        log.info("http.rejected", extra={"reason": reason, "status": status, "left_out": left_out})


def slack_events_handler(
    app: AsyncApp, signing_secret: str, settings: Settings, pool: ConnectionPool
) -> Callable[[web.Request], Any]:
    """POST /slack/events: size, body deadline and signature on the raw bytes, then Bolt."""
    secret = signing_secret.encode()
    max_body = settings.http_max_body_kb * 1024
    rejected = RejectionLog()

    async def events(request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > max_body:
            rejected("too_large", 413)
            return _plain(413, "request body too large", close=True)
        try:
            body = await asyncio.wait_for(request.read(), settings.http_body_timeout_s)
        except web.HTTPRequestEntityTooLarge:
            rejected("too_large", 413)
            return _plain(413, "request body too large", close=True)
        except TimeoutError:
            rejected("body_timeout", 408)
            return _plain(408, "request body too slow", close=True)
        except ConnectionError:  # the client left (or was closed to make room) mid-body
            log.debug("http.client_gone")
            return _plain(400, "incomplete request", close=True)
        headers = request.headers
        rejection = check_signature(
            secret,
            headers.get("X-Slack-Request-Timestamp"),
            headers.get("X-Slack-Signature"),
            body,
            now(),
        )
        if rejection is not None:
            rejected(rejection.reason, rejection.status)
            return _plain(rejection.status, "invalid request")
        mark_answering(request, pool)
        try:
            bolt_request = AsyncBoltRequest(
                body=body.decode("utf-8"), query=request.query_string, headers=dict(headers)
            )
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # signed, yet unreadable
            log.warning("http.unreadable_body", extra={"error": type(exc).__name__})
            return _plain(400, "unreadable body")
        return await to_aiohttp_response(await app.async_dispatch(bolt_request))

    return events


def http_app(
    app: AsyncApp, services: Services, signing_secret: str, pool: ConnectionPool
) -> web.Application:
    """The aiohttp application for HTTP mode: Slack's events, commands and actions, /healthz."""
    settings = services.settings
    web_app = web.Application(
        client_max_size=settings.http_max_body_kb * 1024,
        middlewares=[connection_middleware(pool)],
    )
    web_app.router.add_post(EVENTS_PATH, slack_events_handler(app, signing_secret, settings, pool))
    web_app.router.add_get("/healthz", health_handler(services, "http"))
    return web_app


async def start_http(
    app: AsyncApp, services: Services, signing_secret: str, host: str, port: int
) -> tuple[web.AppRunner, ConnectionPool]:
    """Serve HTTP mode on host:port behind the connection pool (the harness uses it too)."""
    settings = services.settings
    quiet_malformed_requests()
    pool = ConnectionPool(
        connection_limit(settings.http_max_connections), settings.http_header_timeout_s
    )
    runner = web.AppRunner(
        http_app(app, services, signing_secret, pool),
        access_log=None,
        keepalive_timeout=75.0,  # above a load balancer's usual 60 s idle timeout
        max_headers=32,
        max_field_size=8190,
        max_line_size=8190,
    )
    await runner.setup()
    await GuardedSite(runner, host, port, pool).start()
    return runner, pool


async def serve_http(app: AsyncApp, services: Services) -> web.AppRunner:
    """Bolt's endpoint for events, commands and interactivity, plus /healthz."""
    settings = services.settings
    assert settings.slack_signing_secret is not None
    runner, pool = await start_http(
        app,
        services,
        settings.slack_signing_secret.get_secret_value(),
        settings.host,
        settings.port,
    )
    log.info(
        "http.listening",
        extra={"port": settings.port, "path": EVENTS_PATH, "max_connections": pool.limit},
    )
    return runner


class SocketModeServer:
    """The Socket Mode WebSocket, connected in the background (slack_sdk keeps retrying while
    Slack is unreachable), and /healthz beside it. `close` returns within its deadline
    whatever state the connection is in, so SIGTERM is honoured even during an outage."""

    def __init__(self, handler: AsyncSocketModeHandler, runner: web.AppRunner) -> None:
        self.handler = handler
        self.runner = runner
        self._connecting = asyncio.create_task(self._connect(), name="socket-mode connect")

    async def _connect(self) -> None:
        await self.handler.connect_async()
        log.info("socket_mode.connected")

    async def close(self, within_s: float = 3.0) -> None:
        self._connecting.cancel()
        await asyncio.gather(self._connecting, return_exceptions=True)
        try:
            await asyncio.wait_for(self.handler.close_async(), within_s)
        except (TimeoutError, Exception) as exc:
            log.warning("socket_mode.close_incomplete", extra={"error": type(exc).__name__})
        await self.runner.cleanup()


async def serve_socket_mode(app: AsyncApp, services: Services, app_token: str) -> SocketModeServer:
    """Serve /healthz and start connecting the Socket Mode WebSocket (without waiting)."""
    handler = AsyncSocketModeHandler(app, app_token)

    async def connected() -> bool:
        return await handler.client.is_connected()

    web_app = web.Application()
    web_app.router.add_get("/healthz", health_handler(services, "socket", connected))
    runner = await start_site(web_app, services.settings.host, services.settings.port)
    return SocketModeServer(handler, runner)
