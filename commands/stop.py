"""`/cxr stop [version]`: StopProjectVersion now; the outcome (run time, cost) is posted later."""

from __future__ import annotations

from commands.context import CommandContext
from commands.parser import Stop


async def handle(ctx: CommandContext, command: Stop) -> None:
    lifecycle = ctx.lifecycle
    if not lifecycle.rekognition:
        await ctx.reply(lifecycle.rekognition_only("stop"))
        return
    if not await ctx.allowed("stop", command.version):
        return
    await ctx.reply(await lifecycle.stop(ctx.user, ctx.channel, command.version))
