"""The admin check, once, as a Bolt middleware in front of the whole `/cxr` surface.

Starting, stopping and training a model (the slash commands and every button that does one
of them) are for admins only. The middleware recognises those requests from their payload,
asks `Admins` (user IDs and user groups, `bot.slack.permissions`), and for anyone else
acknowledges, audits the refusal and answers with a short ephemeral refusal: the listener
never runs. Everything else passes through. `/cxr start|stop|train` without a Rekognition
project also passes: its listener explains that only the local model runs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse

from bot.core.fleet.guard_notices import KEEP_HOURS, STOP
from bot.services import Services
from bot.slack.blocks.promote import CANCEL as PROMOTE_CANCEL
from bot.slack.blocks.promote import CONFIRM as PROMOTE_CONFIRM
from bot.slack.blocks.promote import STOP_OLD as PROMOTE_STOP_OLD
from bot.slack.fleet import ACTION_PREFIX, CANCEL_START, CONFIRM_START
from bot.slack.permissions import Admins
from commands.parser import Export, Promote, Start, Stop, Train, parse

log = logging.getLogger(__name__)

COST_ACTIONS = {ACTION_PREFIX + name for name in (STOP, *KEEP_HOURS)}
PROMOTE_ACTIONS = {PROMOTE_CONFIRM, PROMOTE_CANCEL, PROMOTE_STOP_OLD}


@dataclass(frozen=True)
class Guarded:
    """A request only admins may make: what it would do, to what, and how to audit a refusal."""

    action: str  # start | stop | train | stop/keep_1h/keep_4h (an alert's buttons)
    target: str
    button: bool
    episode_id: int | None = None  # an idle alert's button


def guarded(body: dict[str, Any], services: Services) -> Guarded | None:
    """The admin-only request in `body`, or None for one anybody may make."""
    if body.get("command") == "/cxr":
        command = parse(body.get("text", ""))
        if isinstance(command, Export):  # reviewed images leave Slack: admins, always
            return Guarded("export", command.destination, False)
        lifecycle = services.lifecycle
        if lifecycle is None or not lifecycle.rekognition:
            return None  # the listener says only the local model runs
        if isinstance(command, Start | Stop):
            return Guarded(type(command).__name__.lower(), command.version or "-", False)
        if isinstance(command, Train):
            return Guarded("train", command.version_name or command.source, False)
        if isinstance(command, Promote):
            return Guarded("promote", command.version, False)
        return None
    if body.get("type") != "block_actions":
        return None
    action = (body.get("actions") or [{}])[0]
    action_id = str(action.get("action_id", ""))
    if action_id in (CONFIRM_START, CANCEL_START):
        try:
            value = json.loads(action.get("value") or "{}")
            name = str(value.get("name") or value.get("arn") or "-")
        except (TypeError, ValueError, AttributeError):
            name = "-"
        return Guarded("start", name, True)
    if action_id in PROMOTE_ACTIONS:
        try:
            name = str(json.loads(action.get("value") or "{}").get("name") or "-")
        except (TypeError, ValueError, AttributeError):
            name = "-"
        return Guarded("promote", name, True)
    if action_id in COST_ACTIONS:
        value = str(action.get("value", ""))
        episode = int(value) if value.isdigit() else None
        return Guarded(action_id.removeprefix(ACTION_PREFIX), value, True, episode)
    return None


def admin_only(services: Services, admins: Admins) -> Callable[..., Awaitable[Any]]:
    async def middleware(
        body: dict[str, Any], ack: Any, respond: Any, next: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        request = guarded(body, services)
        user = (body.get("user") or {}).get("id") or body.get("user_id", "")
        if request is None or await admins.allows(user):
            await next()
            return None
        await _audit_refusal(services, request, user, admins.refusal_reason(user))
        log.info("admin.refused", extra={"action": request.action, "user": user})
        if request.button:
            await respond(
                text=admins.refusal(user), response_type="ephemeral", replace_original=False
            )
        else:
            await respond(text=admins.refusal(user), response_type="ephemeral")
        return BoltResponse(status=200, body="")

    return middleware


async def _audit_refusal(services: Services, request: Guarded, user: str, reason: str) -> None:
    if request.episode_id is not None and services.cost_guard is not None:
        await services.cost_guard.record_refusal(request.episode_id, request.action, user, reason)
    elif services.lifecycle is not None:
        await services.lifecycle.refused(user, request.action, request.target, reason)


def register(app: AsyncApp, services: Services, admins: Admins) -> None:
    app.use(admin_only(services, admins))
