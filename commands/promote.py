"""`/cxr promote VERSION`: the candidate beside the served version, then the buttons
(`bot.slack.listeners.promote_actions` handles the presses)."""

from __future__ import annotations

from commands.context import CommandContext
from commands.parser import Promote


async def handle(ctx: CommandContext, command: Promote) -> None:
    promoter = ctx.services.promoter
    if promoter is None:
        await ctx.reply(ctx.lifecycle.rekognition_only("promote"))
        return
    if not await ctx.allowed("promote", command.version):
        return
    await ctx.reply(await promoter.propose(ctx.user, command.version))
