"""`LocalSlack`: the Slack Web API subset cxr-bot uses, with files, uploads and response URLs.

Requests arrive exactly as slack_sdk sends them (JSON bodies, form fields or query strings) and
get the JSON shapes Slack documents. Failures can be injected per method (`fail`) and for file
downloads (`files_answer_html`), so the bot's handling is tested over the wire.
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
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.sockets: list[web.WebSocketResponse] = []  # Socket Mode connections
        self.socket_acks: list[dict[str, Any]] = []  # what the app sent back over them
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
        self._clock = itertools.count(1)
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

    def next_ts(self) -> str:
        return f"{1_760_000_000 + next(self._clock)}.{next(self._clock):06d}"

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
                    self.socket_acks.append(json.loads(message.data))
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
        for socket in self.sockets:
            await socket.send_json(envelope)
        return envelope_id

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
        if params.get("metadata"):
            message["metadata"] = _json_field(params["metadata"])
        self.messages[channel].append(message)
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": message}

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
        if "metadata" in params:  # as for blocks: left out, the message keeps what it had
            message["metadata"] = _json_field(params["metadata"]) or None
        message["edited"] = {"user": self.bot_user_id, "ts": self.next_ts()}
        return {"ok": True, "channel": channel, "ts": ts, "text": message["text"]}

    def _m_conversations_open(self, params: dict[str, Any]) -> dict[str, Any]:
        users = str(params.get("users", ""))
        if not users:
            return {"ok": False, "error": "users_list_not_supplied"}
        return {"ok": True, "channel": {"id": "D" + users.split(",")[0].lstrip("UW")}}

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
