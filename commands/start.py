"""`/cxr start [version] [min-units] [max-units]`: the hourly cost, then Start / Cancel buttons
(`bot.slack.listeners.lifecycle_actions` handles the press)."""

from __future__ import annotations

from commands.context import CommandContext
from commands.parser import Start


async def handle(ctx: CommandContext, command: Start) -> None:
    lifecycle = ctx.lifecycle
    if not lifecycle.rekognition:
        await ctx.reply(lifecycle.rekognition_only("start"))
        return
    if not await ctx.allowed("start", command.version):
        return
    proposal = await lifecycle.propose_start(
        ctx.user, command.version, command.min_units, command.max_units
    )
    await ctx.reply(proposal)
