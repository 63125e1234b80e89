"""`/cxr export s3://bucket/prefix` (admins): the reviewed images, fetched again from Slack and
de-identified, under `prefix/Normal/` and `prefix/Pneumonia/` with a manifest, ready for
`/cxr train`. It can take a while; the answer comes through the response_url."""

from __future__ import annotations

from bot.core.learning.errors import aws_error
from bot.core.learning.export import ExportResult
from bot.core.training_data import S3Uri
from commands.context import CommandContext
from commands.parser import Export


async def handle(ctx: CommandContext, command: Export) -> None:
    if not await ctx.allowed("export", command.destination):
        return
    try:
        target = S3Uri.parse(command.destination)
    except ValueError as exc:
        await ctx.reply(ExportResult(text=f"I can't write there: {exc}"))
        return
    from bot.adapters.export_sinks import S3Sink

    services = ctx.services
    if not await services.exporter.exportable():
        await ctx.reply(
            ExportResult(
                text="There are no reviewed images to export yet: reviewers label verdicts "
                "with the buttons under them (`CXR_REVIEWERS`)."
            )
        )
        return
    try:
        sink = S3Sink(services.aws.s3, target.bucket, target.prefix)
        result = await services.exporter.export(sink, str(target))
    except Exception as exc:  # credentials, permissions, a missing bucket
        await ctx.reply(ExportResult(text=f"I couldn't write to {target}: {aws_error(exc)}"))
        return
    services.audit.record(
        services.clock.now(),
        ctx.user,
        "export",
        str(target),
        f"ok: {sum(result.written.values())} written, {len(result.missing)} not fetched",
    )
    await ctx.reply(result)
