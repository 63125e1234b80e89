"""The Start / Cancel buttons under a `/cxr start` cost proposal.

The button's value carries the version and the units. A press is acknowledged at once; the
presser's admin rights are checked again (the message may have been forwarded, or the rights
changed), then the proposal is replaced in place by what happened.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.core.ports import Notice
from bot.services import Services
from bot.slack.blocks import UNEXPECTED_FAILURE, render
from bot.slack.blocks.lifecycle import CANCEL_START, CONFIRM_START
from bot.slack.permissions import Admins

log = logging.getLogger(__name__)

EXPIRED = "This button no longer works. Run `/cxr start` again."


def register(app: AsyncApp, services: Services, admins: Admins) -> None:
    @app.action(CONFIRM_START)
    async def confirm_start(ack, body: dict[str, Any], respond) -> None:
        await ack()
        await _press(body, respond, services, admins, confirm=True)

    @app.action(CANCEL_START)
    async def cancel_start(ack, body: dict[str, Any], respond) -> None:
        await ack()
        await _press(body, respond, services, admins, confirm=False)


async def _press(
    body: dict[str, Any], respond: Any, services: Services, admins: Admins, *, confirm: bool
) -> None:
    lifecycle = services.lifecycle
    user = (body.get("user") or {}).get("id", "")
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id", ""
    )
    value = _value(body)
    if value is None:
        await respond(text=EXPIRED, response_type="ephemeral", replace_original=True)
        return
    name = str(value.get("name") or value["arn"])
    if not await admins.allows(user):
        lifecycle.refused(user, "start", name, admins.refusal_reason(user))
        await respond(text=admins.refusal(user), response_type="ephemeral", replace_original=False)
        return
    try:
        if confirm:
            notice: Notice = await lifecycle.confirm_start(
                user, channel, value["arn"], int(value["min"]), _optional_int(value.get("max"))
            )
        else:
            notice = lifecycle.cancel_start(user, name)
    except Exception:
        log.exception("lifecycle.button_failed", extra={"confirm": confirm})
        await respond(
            text=UNEXPECTED_FAILURE,
            response_type="ephemeral",
            replace_original=False,
        )
        return
    rendered = render(notice)
    await respond(text=rendered.text, blocks=rendered.blocks, replace_original=True)


def _value(body: dict[str, Any]) -> dict[str, Any] | None:
    try:
        value = json.loads(body["actions"][0]["value"])
        if isinstance(value, dict) and isinstance(value.get("arn"), str) and value.get("min"):
            return value
    except (KeyError, IndexError, TypeError, ValueError):
        pass
    return None


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
