"""The whole `/cxr` surface: the slash command, its buttons, the admin check, the errors.

One listener acknowledges `/cxr` at once (the usage for a bad command, a short note for a slow
one, nothing otherwise), then answers through the command's response_url, ephemeral; outcomes
that come later (running, stopped, trained) are posted in the channel by the fleet's poller.
`commands.buttons`: every button (start, promote, idle alert, review). `commands.admin`: the
one middleware that lets only admins start, stop, train, promote and export. `commands.errors`:
the one `@app.error` handler.
"""

from __future__ import annotations

from dataclasses import astuple
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.core.ports import Notice
from bot.services import Services
from bot.slack.blocks import render
from bot.slack.escaping import user_text
from bot.slack.permissions import Admins
from commands import admin, buttons, learning
from commands.errors import answered, apologise
from commands.parser import (
    Command,
    Export,
    Help,
    Promote,
    Review,
    Start,
    Status,
    Stop,
    Train,
    parse,
    usage,
)

SLOW = {  # what a slow command says at once about its first argument
    Export: "Fetching the reviewed images for `{}`…",
    Promote: "Comparing `{}` with the served version…",
    Train: "Checking `{}`… (a minute or so for thousands of images)",
}


def register(app: AsyncApp, services: Services, admins: Admins) -> None:
    app.use(admin.admin_only(services, admins))
    app.error(apologise)
    buttons.register(app, services)

    @app.command("/cxr")
    @answered
    async def cxr(ack, body: dict[str, Any], command: dict[str, Any], respond) -> None:
        parsed = parse(command.get("text", ""))
        if isinstance(parsed, Help):
            await ack(text=usage(parsed))
            return
        slow = SLOW.get(type(parsed))
        if slow and (services.promoter is not None or not isinstance(parsed, Promote)):
            await ack(text=slow.format(user_text(astuple(parsed)[0])))
        else:
            await ack()
        user, channel = command.get("user_id", ""), command.get("channel_id", "")
        rendered = render(await answer(services, parsed, user, channel))
        await respond(text=rendered.text, blocks=rendered.blocks or None, response_type="ephemeral")


async def answer(services: Services, command: Command, user: str, channel: str) -> Notice:
    """What `/cxr <command>` answers (for admins only, where `commands.admin` says so)."""
    lifecycle = services.lifecycle
    assert lifecycle is not None  # always attached (local-only too)
    if isinstance(command, Status):
        return await learning.status(services, await lifecycle.status())
    if isinstance(command, Review):
        return await services.reviewing.report(command.days)
    if isinstance(command, Export):
        return await learning.export(services, command, user)
    if isinstance(command, Promote) and services.promoter is not None:
        return await services.promoter.propose(user, command.version)
    if not lifecycle.rekognition or isinstance(command, Promote):
        return lifecycle.rekognition_only(type(command).__name__.lower())
    if isinstance(command, Start):
        return await lifecycle.propose_start(
            user, command.version, command.min_units, command.max_units
        )
    if isinstance(command, Stop):
        return await lifecycle.stop(user, channel, command.version)
    return await lifecycle.train(user, channel, command.source, command.version_name)
