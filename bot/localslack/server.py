"""`LocalSlack`: the Slack Web API subset cxr-bot uses, with files, uploads and response URLs.

Requests arrive exactly as slack_sdk sends them (JSON bodies, form fields or query strings) and
get the JSON shapes Slack documents. Failures can be injected per method (`fail`) and for file
downloads (`files_answer_html`, `fail_downloads`), so the bot's handling is tested over the wire.

Events reach the app as Slack sends them (`deliver`): over Socket Mode, each envelope to one
connection, or as signed HTTP requests to the app's Request URL. An envelope that is not
acknowledged in time (or an HTTP delivery answered with a non-2xx, or not at all) is delivered
again on Slack's schedule, with Slack's retry fields and headers (`Redelivery`, compressed in
tests). Messages keep their `metadata`, and `conversations.replies` returns it on request.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import mimetypes
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in</body></html>"


@dataclass
class ApiCall:
    """One Web API call as the server received it."""

    method: str
    params: dict[str, Any]
    token: str | None
    at: float = field(default_factory=time.monotonic)


@dataclass
class StoredFile:
    id: str
    name: str
    mimetype: str
    data: bytes
    user: str
    title: str = ""
    channel: str | None = None
    thread_ts: str | None = None


@dataclass(frozen=True)
class Redelivery:
    """Slack's retry schedule for events: a delivery is given `ack_timeout_s` to be
    acknowledged; then up to three retries follow, about at once, after 1 min, after 5 min."""

    ack_timeout_s: float = 3.0
    delays: tuple[float, ...] = (0.0, 60.0, 300.0)

    @classmethod
    def compressed(cls, factor: float) -> Redelivery:
        """The same schedule `factor` times faster (tests, benchmarks)."""
        base = cls()
        return cls(base.ack_timeout_s / factor, tuple(d / factor for d in base.delays))


@dataclass
class Attempt:
    """One delivery attempt of an event: when it went out, and what came back."""

    number: int  # 0 for the first delivery, then 1-3 (X-Slack-Retry-Num / retry_attempt)
    sent_at: float
    answered_at: float | None = None
    status: int | None = None  # HTTP status, or 200 for a Socket Mode ack; None: no answer
    reason: str = ""  # why the next attempt was needed (Slack's retry reason)

    @property
    def latency(self) -> float | None:
        return None if self.answered_at is None else self.answered_at - self.sent_at


@dataclass
class Delivery:
    """An event on its way to the app, with every attempt Slack made."""

    event_id: str
    body: dict[str, Any]
    attempts: list[Attempt] = field(default_factory=list)
    acked: bool = False
    finished: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Fault:
    status: int
    body: Any
    headers: dict[str, str]
    times: int


Listener = Callable[[ApiCall, dict[str, Any]], Awaitable[None] | None]


class LocalSlack:
    """A small Slack: one workspace, one bot, any number of channels and users."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-local-bot-token",
        app_token: str = "xapp-local-app-token",
        team_id: str = "T0LOCAL01",
        bot_user_id: str = "U0CXRBOT1",
        bot_id: str = "B0CXRBOT1",
        usergroups: dict[str, list[str]] | None = None,
        redelivery: Redelivery | None = Redelivery(),
        events_url: str | None = None,
        signing_secret: str | None = None,
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.sockets: list[web.WebSocketResponse] = []  # Socket Mode connections
        self.socket_acks: list[dict[str, Any]] = []  # what the app sent back over them
        self.redelivery = redelivery  # None: deliver once, never again
        self.events_url = events_url  # set: events go over HTTP to this Request URL
        self.signing_secret = signing_secret
        self.deliveries: list[Delivery] = []
        self._awaiting_ack: dict[str, tuple[Delivery, Attempt, asyncio.Future[None]]] = {}
        self._next_socket = 0
        self._background: set[asyncio.Task[Any]] = set()
        self._download_faults: list[_Fault] = []
        self._http: aiohttp.ClientSession | None = None  # for HTTP event deliveries
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.usergroups = usergroups or {}
        self.calls: list[ApiCall] = []
        self.files: dict[str, StoredFile] = {}
        self.messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.reactions: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.responses: list[dict[str, Any]] = []  # bodies posted to response_url
        self.downloads: list[str] = []  # ids of files served to a download request
        self.files_chunked = False  # stream downloads without a Content-Length
        self.download_gate: asyncio.Event | None = None  # hold downloads until set
        self.downloads_in_flight = 0
        self.max_downloads_in_flight = 0
        self.files_answer_html = False  # answer downloads with a login page, as without files:read
        self.listeners: list[Listener] = []
        self._faults: dict[str, list[_Fault]] = defaultdict(list)
        self._ids = itertools.count(1)
        self._last_ts_us = 0
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> LocalSlack:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_get("/files-pri/{team}-{file_id}/{name}", self._download)
        app.router.add_get("/files-pri/{team}-{file_id}/download/{name}", self._download)
        app.router.add_post("/upload/v1/{file_id}", self._upload)
        app.router.add_post("/response/{response_id}", self._response_url)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        bound = sockets[0].getsockname()
        self.url = f"http://{bound[0]}:{bound[1]}"
        return self

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        for socket in list(self.sockets):
            await socket.close()
        if self._runner:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> LocalSlack:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    # --- what tests and the shell set up -----------------------------------------------------
    def fail(
        self,
        method: str,
        *,
        status: int = 429,
        times: int = 1,
        retry_after: int | None = 1,
        body: Any = None,
    ) -> None:
        """Answer the next `times` calls of `method` with `status` (429 carries Retry-After)."""
        headers = (
            {"Retry-After": str(retry_after)} if status == 429 and retry_after is not None else {}
        )
        if body is None:
            body = {"ok": False, "error": "ratelimited" if status == 429 else "internal_error"}
        self._faults[method].append(_Fault(status, body, headers, times))

    def add_file(
        self,
        name: str,
        data: bytes,
        *,
        mimetype: str | None = None,
        user: str = "U0CLINIC1",
        file_id: str | None = None,
    ) -> dict[str, Any]:
        """Store a file as if a user uploaded it; returns Slack's file object for events."""
        file_id = file_id or f"F{next(self._ids):08d}"
        mimetype = mimetype or mimetypes.guess_type(name)[0] or "application/octet-stream"
        self.files[file_id] = StoredFile(file_id, name, mimetype, data, user)
        return self.file_object(file_id)

    def file_object(self, file_id: str) -> dict[str, Any]:
        stored = self.files[file_id]
        base = f"{self.url}/files-pri/{self.team_id}-{file_id}"
        filetype = stored.name.rsplit(".", 1)[-1].lower() if "." in stored.name else "binary"
        return {
            "id": file_id,
            "created": int(time.time()),
            "name": stored.name,
            "title": stored.title or stored.name,
            "mimetype": stored.mimetype,
            "filetype": filetype,
            "user": stored.user,
            "size": len(stored.data),
            "mode": "hosted",
            "is_external": False,
            "url_private": f"{base}/{stored.name}",
            "url_private_download": f"{base}/download/{stored.name}",
            "permalink": f"{self.url}/archives/files/{file_id}",
        }

    def fail_downloads(self, *, status: int = 503, times: int = 1, retry_after: int | None = None):
        """Answer the next `times` file downloads with `status` (a Slack outage)."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self._download_faults.append(_Fault(status, "", headers, times))

    def next_ts(self) -> str:
        """Message timestamps as Slack makes them: from the clock, to the microsecond, and
        unique (never repeated, not even by a later run)."""
        now_us = int(time.time() * 1_000_000)
        self._last_ts_us = max(self._last_ts_us + 1, now_us)
        return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def file_share_envelope(
        self,
        channel: str,
        files: list[dict[str, Any]],
        *,
        user: str = "U0CLINIC1",
        ts: str | None = None,
        thread_ts: str | None = None,
        text: str = "",
        channel_type: str = "channel",
    ) -> dict[str, Any]:
        """The Events API body Slack sends when a user shares files in a channel."""
        ts = ts or self.next_ts()
        event: dict[str, Any] = {
            "type": "message",
            "subtype": "file_share",
            "text": text,
            "files": files,
            "upload": False,
            "user": user,
            "display_as_bot": False,
            "ts": ts,
            "channel": channel,
            "channel_type": channel_type,
            "event_ts": ts,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        self.messages[channel].append({"ts": ts, "user": user, "text": text, "files": files})
        return self.envelope(event)

    def envelope(self, event: dict[str, Any]) -> dict[str, Any]:
        return {
            "token": "verification-token",
            "team_id": self.team_id,
            "api_app_id": "A0CXRBOT1",
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{next(self._ids):08d}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }

    def slash_command(
        self, text: str, *, user: str = "U0CLINIC1", channel: str = "C0CLINIC1"
    ) -> dict[str, str]:
        """The form fields Slack posts for `/cxr <text>`."""
        return {
            "token": "verification-token",
            "team_id": self.team_id,
            "team_domain": "local",
            "channel_id": channel,
            "channel_name": "local",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/cxr",
            "text": text,
            "api_app_id": "A0CXRBOT1",
            "response_url": f"{self.url}/response/R{next(self._ids):08d}",
            "trigger_id": f"{next(self._ids)}.trigger",
        }

    def block_action(
        self,
        action: dict[str, Any],
        *,
        message: dict[str, Any],
        channel: str,
        user: str = "U0CLINIC1",
    ) -> dict[str, Any]:
        """The `block_actions` payload Slack posts when a user presses a button in `message`."""
        return {
            "type": "block_actions",
            "team": {"id": self.team_id, "domain": "local"},
            "user": {"id": user, "username": user.lower(), "team_id": self.team_id},
            "api_app_id": "A0CXRBOT1",
            "token": "verification-token",
            "container": {
                "type": "message",
                "message_ts": message["ts"],
                "channel_id": channel,
                "is_ephemeral": False,
            },
            "trigger_id": f"{next(self._ids)}.trigger",
            "channel": {"id": channel, "name": "local"},
            "message": message,
            "response_url": f"{self.url}/response/R{next(self._ids):08d}",
            "actions": [{**action, "action_ts": self.next_ts()}],
        }

    # --- what tests read ---------------------------------------------------------------------
    def calls_to(self, method: str) -> list[ApiCall]:
        return [call for call in self.calls if call.method == method]

    def bot_messages(self, channel: str | None = None) -> list[dict[str, Any]]:
        channels = [channel] if channel else list(self.messages)
        return [m for c in channels for m in self.messages[c] if m.get("user") == self.bot_user_id]

    def find_message(self, channel: str, ts: str) -> dict[str, Any] | None:
        return next((m for m in self.messages[channel] if m["ts"] == ts), None)

    async def wait_for(
        self, predicate: Callable[[], bool], within: float = 10.0, what: str = "condition"
    ) -> None:
        """Wait until `predicate()` holds after some call; fail with `what` after `within` seconds."""

        async def _wait() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        try:
            await asyncio.wait_for(_wait(), within)
        except TimeoutError:
            raise AssertionError(f"timed out after {within}s waiting for {what}") from None

    # --- HTTP handlers -----------------------------------------------------------------------
    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _read_params(request)
        token = _bearer(request) or params.pop("token", None)
        call = ApiCall(method, params, token)
        self.calls.append(call)
        faults = self._faults.get(method)
        if faults:
            fault = faults[0]
            fault.times -= 1
            if fault.times <= 0:
                faults.pop(0)
            await self._notify(call, {"ok": False, "status": fault.status})
            return web.json_response(fault.body, status=fault.status, headers=fault.headers)
        expected = self.app_token if method == "apps.connections.open" else self.bot_token
        if method not in ("auth.test", "api.test") and token != expected:
            return await self._answer(call, {"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return await self._answer(call, {"ok": False, "error": "unknown_method"})
        return await self._answer(call, handler(params))

    async def _answer(self, call: ApiCall, body: dict[str, Any]) -> web.Response:
        await self._notify(call, body)
        return web.json_response(body)

    async def _notify(self, call: ApiCall, body: dict[str, Any]) -> None:
        for listener in self.listeners:
            result = listener(call, body)
            if asyncio.iscoroutine(result):
                await result
        async with self._changed:
            self._changed.notify_all()

    async def _download(self, request: web.Request) -> web.StreamResponse:
        stored = self.files.get(request.match_info["file_id"])
        if self.files_answer_html or _bearer(request) != self.bot_token:
            # Slack's behaviour without a valid token or the files:read scope: a login page.
            return web.Response(body=LOGIN_PAGE, content_type="text/html", status=200)
        if stored is None:
            return web.Response(status=404, text="file_not_found")
        if self._download_faults:
            fault = self._download_faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self._download_faults.pop(0)
            return web.Response(status=fault.status, text="unavailable", headers=fault.headers)
        self.downloads.append(stored.id)
        if self.download_gate is not None:
            self.downloads_in_flight += 1
            self.max_downloads_in_flight = max(
                self.max_downloads_in_flight, self.downloads_in_flight
            )
            async with self._changed:
                self._changed.notify_all()
            try:
                await self.download_gate.wait()
            finally:
                self.downloads_in_flight -= 1
        if not self.files_chunked:
            return web.Response(body=stored.data, content_type=stored.mimetype)
        response = web.StreamResponse(headers={"Content-Type": stored.mimetype})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(stored.data), 16 * 1024):
            await response.write(stored.data[start : start + 16 * 1024])
        await response.write_eof()
        return response

    async def _upload(self, request: web.Request) -> web.Response:
        stored = self.files.get(request.match_info["file_id"])
        if stored is None:
            return web.Response(status=404)
        stored.data = await request.read()
        return web.Response(text="OK - " + str(len(stored.data)))

    async def _response_url(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.responses.append(body)
        call = ApiCall("response_url", body, None)
        self.calls.append(call)
        await self._notify(call, {"ok": True})
        return web.json_response({"ok": True})

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        """Socket Mode: say hello, then read the app's acknowledgements until it goes away."""
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        self.sockets.append(socket)
        await socket.send_json(
            {"type": "hello", "num_connections": len(self.sockets), "debug_info": {"host": "local"}}
        )
        async with self._changed:
            self._changed.notify_all()
        try:
            async for message in socket:
                if message.type == web.WSMsgType.TEXT:
                    ack = json.loads(message.data)
                    self.socket_acks.append(ack)
                    waiting = self._awaiting_ack.pop(ack.get("envelope_id", ""), None)
                    if waiting is not None:
                        _, attempt, future = waiting
                        attempt.answered_at, attempt.status = time.monotonic(), 200
                        if not future.done():
                            future.set_result(None)
                    async with self._changed:
                        self._changed.notify_all()
        finally:
            self.sockets.remove(socket)
        return socket

    async def push(
        self, kind: str, payload: dict[str, Any], *, retry_attempt: int = 0, retry_reason: str = ""
    ) -> str:
        """Send an envelope (`events_api`, `slash_commands`, `interactive`) over Socket Mode."""
        envelope_id = f"env-{next(self._ids):08d}"
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        socket = self._pick_socket()
        if socket is None:
            raise ConnectionError("no Socket Mode connection")
        await socket.send_json(envelope)
        return envelope_id

    def _pick_socket(self) -> web.WebSocketResponse | None:
        """Slack sends each envelope to one of the app's connections, not to all of them."""
        open_sockets = [s for s in self.sockets if not s.closed]
        if not open_sockets:
            return None
        self._next_socket = (self._next_socket + 1) % len(open_sockets)
        return open_sockets[self._next_socket]

    # --- event delivery, as Slack does it ----------------------------------------------------
    def deliver(self, body: dict[str, Any]) -> Delivery:
        """Deliver an Events API body to the app (HTTP if `events_url`, else Socket Mode), and
        again on Slack's schedule until it is acknowledged. Returns at once; the `Delivery`
        records every attempt and sets `finished` when acknowledged or given up."""
        delivery = Delivery(event_id=body.get("event_id", ""), body=body)
        self.deliveries.append(delivery)
        task = asyncio.create_task(self._deliver(delivery))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return delivery

    async def _deliver(self, delivery: Delivery) -> None:
        schedule = self.redelivery
        delays = (None, *(schedule.delays if schedule else ()))
        reason = ""
        try:
            for number, delay in enumerate(delays):
                if delay:
                    await asyncio.sleep(delay)
                attempt = Attempt(number, time.monotonic())
                delivery.attempts.append(attempt)
                async with self._changed:
                    self._changed.notify_all()
                if self.events_url:
                    ok, why = await self._attempt_http(delivery, attempt, reason)
                else:
                    ok, why = await self._attempt_socket(delivery, attempt, reason)
                if ok:
                    delivery.acked = True
                    return
                attempt.reason = reason = why
        finally:
            delivery.finished.set()
            async with self._changed:
                self._changed.notify_all()

    def _ack_timeout(self) -> float:
        return self.redelivery.ack_timeout_s if self.redelivery else Redelivery().ack_timeout_s

    async def _attempt_socket(
        self, delivery: Delivery, attempt: Attempt, reason: str
    ) -> tuple[bool, str]:
        envelope_id = f"env-{next(self._ids):08d}"
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._awaiting_ack[envelope_id] = (delivery, attempt, future)
        envelope = {
            "envelope_id": envelope_id,
            "type": "events_api",
            "payload": delivery.body,
            "accepts_response_payload": False,
            "retry_attempt": attempt.number,
            "retry_reason": reason,
        }
        socket = self._pick_socket()
        try:
            if socket is None:
                return False, "timeout"
            await socket.send_json(envelope)
            await asyncio.wait_for(future, self._ack_timeout())
            return True, ""
        except (TimeoutError, ConnectionError, RuntimeError):
            return False, "timeout"
        finally:
            self._awaiting_ack.pop(envelope_id, None)

    async def _attempt_http(
        self, delivery: Delivery, attempt: Attempt, reason: str
    ) -> tuple[bool, str]:
        from slack_sdk.signature import SignatureVerifier

        assert self.events_url and self.signing_secret, "HTTP delivery needs a URL and a secret"
        raw = json.dumps(delivery.body)
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": SignatureVerifier(self.signing_secret).generate_signature(
                timestamp=timestamp, body=raw
            ),
        }
        if attempt.number:
            headers |= {"X-Slack-Retry-Num": str(attempt.number), "X-Slack-Retry-Reason": reason}
        timeout = aiohttp.ClientTimeout(total=self._ack_timeout())
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        attempt.sent_at = time.monotonic()
        try:
            async with self._http.post(
                self.events_url, data=raw, headers=headers, timeout=timeout
            ) as response:
                attempt.answered_at, attempt.status = time.monotonic(), response.status
                if 200 <= response.status < 300:
                    return True, ""
                return False, "http_error"
        except TimeoutError:
            return False, "http_timeout"
        except aiohttp.ClientError:
            return False, "connection_failed"

    # --- Web API methods ---------------------------------------------------------------------
    def _m_apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": self.url.replace("http://", "ws://", 1) + "/socket"}

    def _m_auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"{self.url}/",
            "team": "Local",
            "user": "cxr-bot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _m_api_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "args": params}

    def _m_chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not params.get("text") and not params.get("blocks"):
            return {"ok": False, "error": "no_text"}
        message = {
            "type": "message",
            "ts": self.next_ts(),
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "text": params.get("text", ""),
            "blocks": _json_field(params.get("blocks")) or [],
        }
        if params.get("thread_ts"):
            message["thread_ts"] = params["thread_ts"]
        metadata = _json_field(params.get("metadata"))
        if metadata:
            message["metadata"] = metadata
        self.messages[channel].append(message)
        shown = {k: v for k, v in message.items() if k != "metadata"}
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": shown}

    def _m_conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        """A thread: its root, then its replies, oldest first; metadata only when asked."""
        channel, ts = params.get("channel", ""), params.get("ts", "")
        if not channel or channel not in self.messages:
            return {"ok": False, "error": "channel_not_found"}
        thread = [
            m for m in self.messages[channel] if m.get("ts") == ts or m.get("thread_ts") == ts
        ]
        if not thread:
            return {"ok": False, "error": "thread_not_found"}
        with_metadata = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        limit = int(params.get("limit") or 1000)
        start = int(params.get("cursor") or 0)
        page = thread[start : start + limit]
        more = start + limit < len(thread)
        messages = [
            m if with_metadata else {k: v for k, v in m.items() if k != "metadata"} for m in page
        ]
        return {
            "ok": True,
            "messages": messages,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _m_chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "message_ts": self.next_ts()}

    def _m_chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, ts = params.get("channel"), params.get("ts")
        message = self.find_message(channel or "", ts or "")
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        message["text"] = params.get("text", message["text"])
        if "blocks" in params:
            message["blocks"] = _json_field(params["blocks"]) or []
        return {"ok": True, "channel": channel, "ts": ts, "text": message["text"]}

    def _m_reactions_add(self, params: dict[str, Any]) -> dict[str, Any]:
        key = (params.get("channel", ""), params.get("timestamp", ""))
        if params.get("name") in self.reactions[key]:
            return {"ok": False, "error": "already_reacted"}
        self.reactions[key].append(params.get("name", ""))
        return {"ok": True}

    def _m_reactions_remove(self, params: dict[str, Any]) -> dict[str, Any]:
        key = (params.get("channel", ""), params.get("timestamp", ""))
        if params.get("name") not in self.reactions[key]:
            return {"ok": False, "error": "no_reaction"}
        self.reactions[key].remove(params.get("name", ""))
        return {"ok": True}

    def _m_files_info(self, params: dict[str, Any]) -> dict[str, Any]:
        file_id = params.get("file", "")
        if file_id not in self.files:
            return {"ok": False, "error": "file_not_found"}
        return {"ok": True, "file": self.file_object(file_id)}

    def _m_files_getUploadURLExternal(self, params: dict[str, Any]) -> dict[str, Any]:
        file_id = f"F{next(self._ids):08d}"
        self.files[file_id] = StoredFile(
            file_id, params.get("filename", "file"), "image/png", b"", self.bot_user_id
        )
        return {"ok": True, "upload_url": f"{self.url}/upload/v1/{file_id}", "file_id": file_id}

    def _m_files_completeUploadExternal(self, params: dict[str, Any]) -> dict[str, Any]:
        entries = _json_field(params.get("files")) or []
        done = []
        for entry in entries:
            stored = self.files.get(entry.get("id", ""))
            if stored is None:
                return {"ok": False, "error": "file_not_found"}
            stored.title = entry.get("title") or stored.name
            stored.channel = params.get("channel_id")
            stored.thread_ts = params.get("thread_ts")
            done.append({"id": stored.id, "title": stored.title, "name": stored.name})
        return {"ok": True, "files": done}

    def _m_usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        group = params.get("usergroup", "")
        if group not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": self.usergroups[group]}


async def _read_params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query)
    if request.body_exists:
        content_type = request.content_type
        if content_type == "application/json":
            params.update(await request.json())
        elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        else:
            raw = (await request.read()).decode()
            params.update(dict(parse_qsl(raw)))
    return params


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:] if header.startswith("Bearer ") else None


def _json_field(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return None
    return value
