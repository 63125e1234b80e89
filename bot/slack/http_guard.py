"""The HTTP front door in HTTP mode: limits on every connection so that slow or hostile clients
cannot starve `/healthz` or Slack's events (signatures: `bot.slack.signatures`).

- `ConnectionPool` wraps aiohttp's per-connection protocol: a request's head must arrive
  within a deadline of its first byte (aiohttp has no such deadline of its own), and past the
  connection cap the pool closes the connections that are idle or still sending, oldest and
  least advanced first, never one whose request is being answered. A cap alone (refusing
  newcomers) would only move the starvation point.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger(__name__)

# File descriptors kept back for everything else: the database, Slack, AWS, downloads.
FD_RESERVE = 256


# --- connections ------------------------------------------------------------------------------
# What a connection is doing, in the order the pool closes them when it must (least useful
# first, oldest first within each): nothing (idle or silent), sending a request head, sending
# a body. A connection whose request is being answered is never closed by the pool. A real
# client (Slack, a load balancer, a probe) sends its whole head at once, so it spends a moment
# at most in the first two groups, where the flood's connections linger.
IDLE, HEAD, BODY, ANSWERING = range(4)
# The cap is enforced a moment after a connection arrives, once the connections accepted in the
# same burst have had their first bytes read (a burst is accepted before any of them is read);
# past the cap by SURGE, at once.
TRIM_AFTER_S = 0.05
SURGE = 128
HEAD_END = b"\r\n\r\n"


class _Connection(asyncio.Protocol):
    """aiohttp's RequestHandler behind a thin protocol that tracks how far each request has
    come, times request heads, and lets the pool close it. Callbacks pass straight through."""

    def __init__(self, pool: ConnectionPool, handler: Any) -> None:
        self.pool = pool
        self.handler = handler
        self.transport: asyncio.Transport | None = None
        self.state = IDLE
        self.since = time.monotonic()  # when it entered its state
        self._tail = b""  # the last bytes of a head in progress, to spot its end across reads
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.pool._opened(self)
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.state in (IDLE, HEAD) and data:
            if self.state == IDLE:
                self.pool._move(self, HEAD)
                loop = asyncio.get_running_loop()
                self._head_deadline = loop.call_later(self.pool.header_timeout, self._head_late)
            seen = self._tail + data
            if HEAD_END in seen:
                self._cancel_deadline()
                self._tail = b""
                self.pool._move(self, BODY)
            else:
                self._tail = seen[-3:]
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        self.pool._closed(self)
        self.handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    # --- told by the request handlers ---
    def answering(self) -> None:
        self.pool._move(self, ANSWERING)

    def request_done(self) -> None:
        self._tail = b""
        self.pool._move(self, IDLE)

    def close(self, reason: str) -> None:
        self.pool.closed_by_reason[reason] = self.pool.closed_by_reason.get(reason, 0) + 1
        self.pool._closed(self)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def _head_late(self) -> None:
        self._head_deadline = None
        if self.state == HEAD:
            self.close("header_timeout")

    def _cancel_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None


class ConnectionPool:
    """Open connections by what they are doing, each group oldest first; the head deadline
    and the cap. Finding whom to close is O(1): the first of the first non-empty group."""

    def __init__(self, limit: int, header_timeout: float) -> None:
        self.limit = limit
        self.header_timeout = header_timeout
        self._groups: list[dict[_Connection, None]] = [{} for _ in range(4)]
        self.peak = 0
        self.closed_by_reason: dict[str, int] = {}
        self._by_transport: dict[Any, _Connection] = {}
        self._trim_handle: asyncio.TimerHandle | None = None

    @property
    def size(self) -> int:
        return len(self._by_transport)

    def protocol_factory(self, make_handler: Callable[[], Any]) -> Callable[[], _Connection]:
        return lambda: _Connection(self, make_handler())

    def connection_of(self, request: web.BaseRequest) -> _Connection | None:
        return self._by_transport.get(request.transport)

    def _opened(self, connection: _Connection) -> None:
        self._by_transport[connection.transport] = connection
        self._groups[IDLE][connection] = None
        if self.size > self.limit:
            victim = next(
                (
                    next(iter(g))
                    for g in self._groups[:ANSWERING]
                    if g and next(iter(g)) is not connection
                ),
                None,
            )
            if victim is None:  # the newcomer is the only idle one: it goes
                victim = connection
            victim.close("evicted")
        self.peak = max(self.peak, self.size)

    def _victim(self, newcomer: _Connection | None) -> _Connection | None:
        """The connection that has made the least progress, other than the newcomer: idle for
        a while, then any sending a head (a real client sends its head at once), then one
        sending a body for a while; only then one that just connected, then one whose body
        just began. None when every other connection is being answered."""
        settled = time.monotonic() - TRIM_AFTER_S
        idle, head, body = self._groups[IDLE], self._groups[HEAD], self._groups[BODY]
        for group, old_only in (
            (idle, True),
            (head, False),
            (body, True),
            (idle, False),
            (body, False),
        ):
            for connection in group:  # oldest first
                if old_only and connection.since > settled:
                    break
                if connection is not newcomer:
                    return connection
        return None

    def _move(self, connection: _Connection, state: int) -> None:
        if connection.transport not in self._by_transport:
            return  # already closed
        self._groups[connection.state].pop(connection, None)
        connection.state = state
        connection.since = time.monotonic()
        self._groups[state][connection] = None

    def _closed(self, connection: _Connection) -> None:
        if self._by_transport.pop(connection.transport, None) is not None:
            self._groups[connection.state].pop(connection, None)


def connection_middleware(pool: ConnectionPool) -> Any:
    """Tells each connection when its request is being answered and when the answer is out."""

    @web.middleware
    async def track(request: web.Request, handler: Any) -> web.StreamResponse:
        connection = pool.connection_of(request)
        if connection is not None and request.method in ("GET", "HEAD"):
            connection.answering()  # nothing more to receive
        try:
            response = await handler(request)
            if connection is not None and not response.prepared:
                try:  # sent before the connection counts as idle (and may be closed)
                    await response.prepare(request)
                    await response.write_eof()
                except ConnectionError:
                    log.debug("http.client_gone")
            return response
        finally:
            if connection is not None:
                connection.request_done()

    return track


def mark_answering(request: web.BaseRequest, pool: ConnectionPool) -> None:
    """The whole request is in: from now on the connection is doing Slack's work."""
    connection = pool.connection_of(request)
    if connection is not None:
        connection.answering()


class GuardedSite(web.TCPSite):
    """A `TCPSite` whose connections go through the pool."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, pool: ConnectionPool):
        super().__init__(runner, host, port)
        self.pool = pool

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.pool.protocol_factory(server), self._host, self._port, backlog=self._backlog
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]


def connection_limit(wanted: int) -> int:
    """`wanted`, kept under the open-files limit (raised to its hard limit first), so that a
    flood of connections meets the pool's cap before the process runs out of descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return max(16, min(wanted, soft - FD_RESERVE - SURGE))


class MalformedRequests(logging.Filter):
    """aiohttp logs an unparseable request (a bad request line, a header too long) as an
    error with a traceback; it is only a client's junk: one info line here, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            log.info("http.malformed_request", extra={"error": type(error).__name__})
            return False
        return True


def quiet_malformed_requests() -> None:
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequests) for f in server_log.filters):
        server_log.addFilter(MalformedRequests())
