"""`/cxr review [days]`: the reviewed verdicts' figures per model version, ephemeral, with a
"Post chart" button (`bot.slack.listeners.review_actions` handles the press)."""

from __future__ import annotations

from commands.context import CommandContext
from commands.parser import Review


async def handle(ctx: CommandContext, command: Review) -> None:
    await ctx.reply(await ctx.services.reviewing.report(command.days))
