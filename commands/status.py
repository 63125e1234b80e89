"""`/cxr status`: versions, what runs and costs, operations in flight, recent actions; then the
served version and the reviewed figures (`commands.learning.status`)."""

from __future__ import annotations

from commands import learning
from commands.context import CommandContext
from commands.parser import Status


async def handle(ctx: CommandContext, command: Status) -> None:
    await ctx.reply(await learning.status(ctx.services, await ctx.lifecycle.status()))
