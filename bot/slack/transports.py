"""Serving the Bolt app: HTTP (Events API behind a load balancer) or Socket Mode.

Both serve `GET /healthz` on `PORT`; in Socket Mode it reports whether the socket is up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp

from bot import __version__
from bot.services import Services

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


async def serve_http(app: AsyncApp, services: Services) -> web.AppRunner:
    """Bolt's aiohttp endpoint for events, commands and interactivity, plus /healthz."""
    settings = services.settings
    web_app = app.web_app(path=EVENTS_PATH, port=settings.port)
    web_app.router.add_get("/healthz", health_handler(services, "http"))
    runner = await start_site(web_app, settings.host, settings.port)
    log.info("http.listening", extra={"port": settings.port, "path": EVENTS_PATH})
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
