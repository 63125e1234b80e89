"""What stands in front of every `/cxr` listener: the admin check and the error handler.

The admin check is one Bolt middleware. Starting, stopping, training, promoting and exporting (the commands, and every button that does
one of them) are for admins only (`Admins`: user IDs and user groups). For anyone else the
middleware audits the refusal and answers with a short ephemeral refusal: the listener never
runs. `/cxr start|stop|train|promote` without a Rekognition project passes: its listener
explains that only the local model runs.

The error handler: a listener that fails is logged (its kind, never the payload) and the asker
gets one short apology, never a trace. `apologise` is the app's `@app.error` handler. Our own
listeners also wear `@answered`, which hands their failures to the same function: slack_bolt
1.30's async runner (ack before work) overwrites an acknowledgement with "no ack" when a
listener fails within its 10 ms ack poll, so Slack would get a 404 for a fast failure;
catching it in the listener keeps the 200.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.response import BoltResponse

from bot.services import Services
from bot.slack.blocks import UNEXPECTED_FAILURE
from bot.slack.blocks.promote import CANCEL, CONFIRM, STOP_OLD
from bot.slack.fleet import ACTION_PREFIX, CANCEL_START, CONFIRM_START
from bot.slack.permissions import Admins
from commands.parser import Export, Promote, Start, Stop, Train, parse

log = logging.getLogger(__name__)

# Buttons that start or promote a version (their value's JSON names it).
BUTTONS = dict.fromkeys((CONFIRM_START, CANCEL_START), "start") | dict.fromkeys(
    (CONFIRM, CANCEL, STOP_OLD), "promote"
)


def guarded(body: dict[str, Any], services: Services) -> tuple[str, str, int | None] | None:
    """The admin-only request in `body` (action, target, an idle alert's episode), or None."""
    if body.get("command") == "/cxr":
        command = parse(body.get("text", ""))
        if isinstance(command, Export):  # reviewed images leave Slack: admins, always
            return "export", command.destination, None
        lifecycle = services.lifecycle
        if lifecycle is None or not lifecycle.rekognition:
            return None  # the listener says only the local model runs
        if isinstance(command, Train):
            return "train", command.version_name or command.source, None
        if isinstance(command, Start | Stop | Promote):
            return type(command).__name__.lower(), command.version or "-", None
        return None
    action = (body.get("actions") or [{}])[0] if body.get("type") == "block_actions" else {}
    action_id, value = str(action.get("action_id", "")), str(action.get("value", ""))
    if action_id.startswith(ACTION_PREFIX):
        episode = int(value) if value.isdigit() else None
        return action_id.removeprefix(ACTION_PREFIX), value, episode
    if action_id not in BUTTONS:
        return None
    fields = value_of(action) or {}
    return BUTTONS[action_id], str(fields.get("name") or fields.get("arn") or "-"), None


def admin_only(services: Services, admins: Admins) -> Callable[..., Awaitable[Any]]:
    async def middleware(
        body: dict[str, Any], respond: Any, next: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        request = guarded(body, services)
        user = (body.get("user") or {}).get("id") or body.get("user_id", "")
        if request is None or await admins.allows(user):
            await next()
            return None
        action, target, episode = request
        reason = admins.refusal_reason(user)
        if episode is not None and services.cost_guard is not None:
            await services.cost_guard.record_refusal(episode, action, user, reason)
        elif services.lifecycle is not None:
            await services.lifecycle.refused(user, action, target, reason)
        log.info("admin.refused", extra={"action": action, "user": user})
        button = {"replace_original": False} if body.get("type") == "block_actions" else {}
        await respond(text=admins.refusal(user), response_type="ephemeral", **button)
        return BoltResponse(status=200, body="")

    return middleware


async def apologise(error: Exception, body: dict[str, Any], respond: Any) -> None:
    kind = body.get("command") or body.get("type") or "request"
    log.error("listener.failed", exc_info=error, extra={"kind": kind})
    if respond is not None and (body.get("response_url") or body.get("command")):
        try:
            await respond(
                text=UNEXPECTED_FAILURE, response_type="ephemeral", replace_original=False
            )
        except Exception as exc:  # the apology itself can't go out: logged above, that's all
            log.warning("listener.apology_failed", extra={"error": type(exc).__name__})


def answered(listener: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """A listener (taking `body` and `respond`) whose failures go to `apologise`."""

    @functools.wraps(listener)
    async def wrapped(**kwargs: Any) -> None:
        try:
            await listener(**kwargs)
        except Exception as exc:
            await apologise(exc, kwargs.get("body") or {}, kwargs.get("respond"))

    return wrapped


def value_of(action: dict[str, Any]) -> dict[str, Any] | None:
    """A button's JSON value, or None for one this code didn't write."""
    try:
        value = json.loads(action.get("value") or "")
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None
