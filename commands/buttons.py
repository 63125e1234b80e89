"""The `/cxr` surface's buttons: Start / Cancel under a `/cxr start` cost proposal, and Stop
now / Keep running 1 h / 4 h on an idle alert.

Only admins reach these listeners (`commands.admin`). A press is acknowledged at once, then
acted on: a start proposal is replaced in place by what happened; an idle alert is updated by
the cost guard, and the presser hears only what the alert can't say.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.core.fleet.guard_notices import KEEP_HOURS, STOP
from bot.core.ports import Notice
from bot.services import Services
from bot.slack.blocks import render
from bot.slack.fleet import ACTION_PREFIX, CANCEL_START, CONFIRM_START, slack_text
from commands.errors import answered

log = logging.getLogger(__name__)

EXPIRED = "This button no longer works. Run `/cxr start` again."
UNKNOWN_ALERT = "I don't know that alert."
COST_ACTIONS = re.compile(
    "^" + re.escape(ACTION_PREFIX) + "(" + "|".join([STOP, *KEEP_HOURS]) + ")$"
)


def register(app: AsyncApp, services: Services) -> None:
    @app.action(CONFIRM_START)
    @answered
    async def confirm_start(ack, body: dict[str, Any], respond) -> None:
        await ack()
        await _start_press(body, respond, services, confirm=True)

    @app.action(CANCEL_START)
    @answered
    async def cancel_start(ack, body: dict[str, Any], respond) -> None:
        await ack()
        await _start_press(body, respond, services, confirm=False)

    @app.action(COST_ACTIONS)
    @answered
    async def on_alert_button(ack, body: dict[str, Any], action: dict[str, Any], respond) -> None:
        await ack()
        user = (body.get("user") or {}).get("id", "")
        name = action.get("action_id", "").removeprefix(ACTION_PREFIX)
        guard = services.cost_guard
        value = str(action.get("value", ""))
        if not value.isdigit() or int(value) <= 0:
            await _ephemeral(respond, UNKNOWN_ALERT)
            return
        if guard is None:
            await _ephemeral(respond, "The cost guard isn't running, so this alert is stale.")
            return
        result = await guard.press(int(value), name, user)
        log.info(
            "cost_guard.button",
            extra={"action": name, "user": user, "episode": int(value), "ok": result.ok},
        )
        if result.message:
            await _ephemeral(respond, slack_text(result.describe))


async def _start_press(
    body: dict[str, Any], respond: Any, services: Services, *, confirm: bool
) -> None:
    lifecycle = services.lifecycle
    assert lifecycle is not None
    user = (body.get("user") or {}).get("id", "")
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id", ""
    )
    value = _start_value(body)
    if value is None:
        await respond(text=EXPIRED, response_type="ephemeral", replace_original=True)
        return
    if confirm:
        notice: Notice = await lifecycle.confirm_start(
            user, channel, value["arn"], value["min"], value["max"]
        )
    else:
        notice = await lifecycle.cancel_start(user, str(value.get("name") or value["arn"]))
    rendered = render(notice)
    await respond(text=rendered.text, blocks=rendered.blocks, replace_original=True)


def _start_value(body: dict[str, Any]) -> dict[str, Any] | None:
    """The proposal's version and units, or None for a value this code didn't write."""
    try:
        value = json.loads(body["actions"][0]["value"])
        if isinstance(value, dict) and isinstance(value.get("arn"), str):
            high = value.get("max")
            return {**value, "min": int(value["min"]), "max": None if high is None else int(high)}
    except (KeyError, IndexError, TypeError, ValueError):
        pass
    return None


async def _ephemeral(respond: Any, text: str) -> None:
    await respond(text=text, response_type="ephemeral", replace_original=False)
