"""The `/cxr` slash command: help, status, start, stop, train.

One listener acknowledges at once (the usage for a bad command, a short "checking" note for a
training, nothing otherwise), then hands the parsed command to its module. The answers go
through the command's response_url, ephemeral; outcomes that come later (running, stopped,
trained) are posted in the channel by the lifecycle service.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.services import Services
from bot.slack.blocks import UNEXPECTED_FAILURE
from bot.slack.escaping import user_text
from bot.slack.permissions import Admins
from commands import start, status, stop, train
from commands.context import CommandContext
from commands.help import usage
from commands.parser import Command, Help, Start, Status, Stop, Train, parse

log = logging.getLogger(__name__)

Handler = Callable[[CommandContext, Any], Awaitable[None]]

HANDLERS: dict[type, Handler] = {
    Status: status.handle,
    Start: start.handle,
    Stop: stop.handle,
    Train: train.handle,
}


def register(app: AsyncApp, services: Services, admins: Admins) -> None:
    @app.command("/cxr")
    async def cxr(ack, command: dict[str, Any], respond) -> None:
        parsed: Command = parse(command.get("text", ""))
        if isinstance(parsed, Help):
            await ack(text=usage(parsed))
            return
        if isinstance(parsed, Train):
            source = user_text(parsed.source)
            await ack(text=f"Checking `{source}`… (a minute or so for thousands of images)")
        else:
            await ack()
        ctx = CommandContext(
            services=services,
            admins=admins,
            user=command.get("user_id", ""),
            channel=command.get("channel_id", ""),
            respond=respond,
        )
        try:
            await HANDLERS[type(parsed)](ctx, parsed)
        except Exception:
            log.exception("command.failed", extra={"text": command.get("text", "")})
            await respond(text=UNEXPECTED_FAILURE, response_type="ephemeral")
