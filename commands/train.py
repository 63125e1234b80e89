"""`/cxr train s3://bucket/prefix [version-name]`: check the images, write the manifest, train.

Checking reads every image's header from S3, which can take a minute; the command was
acknowledged before, and the answer comes through the response_url."""

from __future__ import annotations

from commands.context import CommandContext
from commands.parser import Train


async def handle(ctx: CommandContext, command: Train) -> None:
    lifecycle = ctx.lifecycle
    if not lifecycle.rekognition:
        await ctx.reply(lifecycle.rekognition_only("train"))
        return
    if not await ctx.allowed("train", command.version_name or command.source):
        return
    notice = await lifecycle.train(ctx.user, ctx.channel, command.source, command.version_name)
    await ctx.reply(notice)
