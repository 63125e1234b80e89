"""The learning loop's part of `/cxr`: `export s3://bucket/prefix` (admins) and what it adds
to `status`; `review` and `promote` answer straight from their services, and their buttons are
in `commands.buttons`.
"""

from __future__ import annotations

from bot.core.learning.errors import aws_error
from bot.core.learning.export import ExportResult
from bot.core.learning.reviewing import StatusWithFigures
from bot.core.ports import Notice
from bot.core.training_data import S3Uri
from bot.services import Services
from commands.parser import Export

STATUS_REVIEW_DAYS = 30
NOTHING_TO_EXPORT = (
    "There are no reviewed images to export yet: reviewers label verdicts with the buttons "
    "under them (`CXR_REVIEWERS`)."
)


async def export(services: Services, command: Export, user: str) -> Notice:
    try:
        target = S3Uri.parse(command.destination)
    except ValueError as exc:
        return ExportResult(text=f"I can't write there: {exc}")
    if not await services.exporter.exportable():
        return ExportResult(text=NOTHING_TO_EXPORT)
    from bot.adapters.export_sinks import S3Sink

    try:
        sink = S3Sink(services.aws.s3, target.bucket, target.prefix)
        result = await services.exporter.export(sink, str(target))
    except Exception as exc:  # credentials, permissions, a missing bucket
        return ExportResult(text=f"I couldn't write to {target}: {aws_error(exc)}")
    await services.audit.record(
        services.clock.now(),
        user,
        "export",
        str(target),
        f"ok: {sum(result.written.values())} written, {len(result.missing)} not fetched",
    )
    return result


async def status(services: Services, lifecycle_status: Notice) -> Notice:
    """`/cxr status` with the served version (when a promotion changed it, or one is under
    way) and the last 30 days' reviewed figures after the lifecycle's report."""
    return StatusWithFigures(
        status=lifecycle_status,
        report=await services.reviewing.report(STATUS_REVIEW_DAYS),
        served=await services.serving.served(),
        configured_arn=services.settings.cxr_project_version_arn,
        promotion=await services.serving.in_flight(),
    )
