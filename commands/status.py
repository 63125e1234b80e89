"""`/cxr status`: versions, what runs and costs, operations in flight, recent actions."""

from __future__ import annotations

from commands.context import CommandContext
from commands.parser import Status


async def handle(ctx: CommandContext, command: Status) -> None:
    await ctx.reply(await ctx.lifecycle.status())
