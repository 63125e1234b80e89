""" ""The buttons of `/cxr promote`: Promote (once, or twice for a worse candidate), Cancel, and
"Stop <old version>" once the candidate serves. Admins only: `commands.admin` checks every
press before these listeners run."""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.core.ports import Notice
from bot.services import Services
from bot.slack.blocks import UNEXPECTED_FAILURE, render
from bot.slack.blocks.promote import CANCEL, CONFIRM, STOP_OLD

log = logging.getLogger(__name__)

EXPIRED = "This button no longer works. Run `/cxr promote VERSION` again."


def register(app: AsyncApp, services: Services) -> None:
    """Admins only: `commands.admin` refuses anyone else before these run."""

    @app.action(CONFIRM)
    async def on_confirm(ack, body: dict[str, Any], respond) -> None:
        await ack()
        await _press(services, body, respond, CONFIRM)

    @app.action(CANCEL)
    async def on_cancel(ack, body: dict[str, Any], respond) -> None:
        await ack()
        await _press(services, body, respond, CANCEL)

    @app.action(STOP_OLD)
    async def on_stop_old(ack, body: dict[str, Any], respond) -> None:
        await ack()
        await _press(services, body, respond, STOP_OLD)


async def _press(services: Services, body: dict[str, Any], respond: Any, which: str) -> None:
    user = (body.get("user") or {}).get("id", "")
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id", ""
    )
    try:
        value = json.loads(body["actions"][0]["value"])
        name = str(value.get("name") or "")
    except (KeyError, IndexError, TypeError, ValueError):
        await respond(text=EXPIRED, response_type="ephemeral", replace_original=False)
        return
    promoter, lifecycle = services.promoter, services.lifecycle
    if promoter is None or lifecycle is None:
        await respond(text=EXPIRED, response_type="ephemeral", replace_original=False)
        return
    try:
        if which == CONFIRM:
            notice: Notice = await promoter.confirm(
                user,
                channel,
                str(value["arn"]),
                int(value.get("step", 1)),
                int(value.get("units", 1)),
                worse=bool(value.get("worse")),
                served_name=str(value.get("served") or ""),
                summary=str(value.get("why") or ""),
            )
        elif which == CANCEL:
            notice = await promoter.cancel(user, name)
        else:
            notice = await lifecycle.stop(user, channel, str(value["arn"]))
    except Exception:
        log.exception("promote.button_failed", extra={"action": which})
        await respond(text=UNEXPECTED_FAILURE, response_type="ephemeral", replace_original=False)
        return
    rendered = render(notice)
    await respond(text=rendered.text, blocks=rendered.blocks, replace_original=True)
