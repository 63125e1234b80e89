"""The `/cxr` surface's buttons (admins only: `commands.admin`), acknowledged at once, then
acted on: Start / Cancel under a `/cxr start` proposal, which is replaced in place by what
happened; Stop now / Keep running on an idle alert, which the cost guard updates itself (the
presser hears only what the alert can't say).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.services import Services
from bot.slack.blocks import render
from bot.slack.fleet import ACTION_PREFIX, CANCEL_START, CONFIRM_START, mrkdwn
from commands.errors import answered

log = logging.getLogger(__name__)

EXPIRED = "This button no longer works. Run `/cxr start` again."
UNKNOWN_ALERT = "I don't know that alert."
NO_GUARD = "The cost guard isn't running, so this alert is stale."
START_BUTTONS = re.compile(f"^({re.escape(CONFIRM_START)}|{re.escape(CANCEL_START)})$")


def register(app: AsyncApp, services: Services) -> None:
    @app.action(START_BUTTONS)
    @answered
    async def start_press(ack, body: dict[str, Any], action: dict[str, Any], respond) -> None:
        await ack()
        lifecycle, user = services.lifecycle, _user(body)
        assert lifecycle is not None
        value = _start_value(action)
        if value is None:
            await respond(text=EXPIRED, response_type="ephemeral", replace_original=True)
            return
        if action["action_id"] == CONFIRM_START:
            channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
                "channel_id", ""
            )
            notice = await lifecycle.confirm_start(
                user, channel, value["arn"], value["min"], value["max"]
            )
        else:
            notice = await lifecycle.cancel_start(user, str(value.get("name") or value["arn"]))
        rendered = render(notice)
        await respond(text=rendered.text, blocks=rendered.blocks, replace_original=True)

    @app.action(re.compile("^" + re.escape(ACTION_PREFIX)))
    @answered
    async def alert_press(ack, body: dict[str, Any], action: dict[str, Any], respond) -> None:
        await ack()
        name = action.get("action_id", "").removeprefix(ACTION_PREFIX)
        value, guard = str(action.get("value", "")), services.cost_guard
        if not value.isdigit() or int(value) <= 0:
            text = UNKNOWN_ALERT
        elif guard is None:
            text = NO_GUARD
        else:
            result = await guard.press(int(value), name, _user(body))
            extra = {"action": name, "user": _user(body), "episode": int(value), "ok": result.ok}
            log.info("cost_guard.button", extra=extra)
            text = " ".join(mrkdwn(result)) if result.message else ""
        if text:
            await respond(text=text, response_type="ephemeral", replace_original=False)


def _user(body: dict[str, Any]) -> str:
    return (body.get("user") or {}).get("id", "")


def _start_value(action: dict[str, Any]) -> dict[str, Any] | None:
    """The proposal's version and units, or None for a value this code didn't write."""
    try:
        value = json.loads(action["value"])
        if isinstance(value, dict) and isinstance(value.get("arn"), str):
            high = value.get("max")
            return {**value, "min": int(value["min"]), "max": None if high is None else int(high)}
    except (KeyError, TypeError, ValueError):
        pass
    return None
