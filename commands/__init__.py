"""The whole `/cxr` surface: the slash command, its buttons, the admin check, the errors.

- `/cxr help|status|start|stop|train`: one listener acknowledges at once (the usage for a bad
  command, a short "checking" note for a training, nothing otherwise), then answers through the
  command's response_url, ephemeral; outcomes that come later (running, stopped, trained) are
  posted in the channel by the fleet's poller.
- `commands.buttons`: Start / Cancel, and the idle alert's Stop now / Keep running.
- `commands.admin`: one Bolt middleware lets only admins start, stop and train.
- `commands.errors`: the one `@app.error` handler: a listener that fails gets one short
  apology, never a trace.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.core.fleet.lifecycle import Lifecycle
from bot.core.ports import Notice
from bot.services import Services
from bot.slack.blocks import render
from bot.slack.escaping import user_text
from bot.slack.permissions import Admins
from commands import admin, buttons
from commands.errors import answered, apologise
from commands.parser import Help, Start, Status, Stop, Train, parse, usage

log = logging.getLogger(__name__)


def register(app: AsyncApp, services: Services, admins: Admins) -> None:
    admin.register(app, services, admins)
    buttons.register(app, services)

    app.error(apologise)

    @app.command("/cxr")
    @answered
    async def cxr(ack, body: dict[str, Any], command: dict[str, Any], respond) -> None:
        parsed = parse(command.get("text", ""))
        if isinstance(parsed, Help):
            await ack(text=usage(parsed))
            return
        if isinstance(parsed, Train):
            source = user_text(parsed.source)
            await ack(text=f"Checking `{source}`… (a minute or so for thousands of images)")
        else:
            await ack()
        lifecycle = services.lifecycle
        assert lifecycle is not None  # always attached (local-only too)
        user, channel = command.get("user_id", ""), command.get("channel_id", "")
        await _reply(respond, await answer(lifecycle, parsed, user, channel))


async def answer(
    lifecycle: Lifecycle, command: Status | Start | Stop | Train, user: str, channel: str
) -> Notice:
    """What `/cxr <command>` answers (admins only for start, stop and train: `commands.admin`)."""
    if isinstance(command, Status):
        return await lifecycle.status()
    if not lifecycle.rekognition:
        return lifecycle.rekognition_only(type(command).__name__.lower())
    if isinstance(command, Start):
        return await lifecycle.propose_start(
            user, command.version, command.min_units, command.max_units
        )
    if isinstance(command, Stop):
        return await lifecycle.stop(user, channel, command.version)
    return await lifecycle.train(user, channel, command.source, command.version_name)


async def _reply(respond: Any, notice: Notice) -> None:
    """An ephemeral answer through the command's response_url (usable for 30 minutes)."""
    rendered = render(notice)
    await respond(text=rendered.text, blocks=rendered.blocks or None, response_type="ephemeral")
