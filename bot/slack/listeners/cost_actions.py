"""The buttons on an idle alert: Stop now, Keep running 1 h, Keep running 4 h.

Admins only. The press is acknowledged at once; the cost guard then acts and updates the
alert in place with who pressed what. Anyone else gets a polite ephemeral refusal and the
alert stays as it was.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.core.cost_notices import KEEP_HOURS, STOP
from bot.services import Services
from bot.slack.blocks.cost import ACTION_PREFIX
from bot.slack.permissions import Admins

log = logging.getLogger(__name__)

ACTIONS = re.compile("^" + re.escape(ACTION_PREFIX) + "(" + "|".join([STOP, *KEEP_HOURS]) + ")$")


def register(app: AsyncApp, services: Services, admins: Admins) -> None:
    @app.action(ACTIONS)
    async def on_cost_action(ack, body: dict[str, Any], action: dict[str, Any], respond) -> None:
        await ack()
        user = (body.get("user") or {}).get("id", "")
        name = action.get("action_id", "").removeprefix(ACTION_PREFIX)
        guard = services.cost_guard
        try:
            episode_id = int(action.get("value", ""))
        except ValueError:
            episode_id = 0
        if guard is None or not episode_id:
            await _ephemeral(respond, "The cost guard isn't running, so this alert is stale.")
            return
        if not await admins.allows(user):
            guard.record_refusal(episode_id, name, user)
            await _ephemeral(respond, admins.refusal(user))
            return
        result = await guard.press(episode_id, name, user)
        log.info(
            "cost_guard.button",
            extra={"action": name, "user": user, "episode": episode_id, "ok": result.ok},
        )
        if result.message:
            await _ephemeral(respond, result.message)


async def _ephemeral(respond, text: str) -> None:
    await respond(text=text, response_type="ephemeral", replace_original=False)
