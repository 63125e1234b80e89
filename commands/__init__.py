"""The whole `/cxr` surface: the slash command, its buttons, the admin check, the errors.

One listener acknowledges `/cxr` at once (the usage for a bad command, a short note for a slow
one, nothing otherwise), then answers through the command's response_url, ephemeral; outcomes
that come later (running, stopped, trained) are posted in the channel by the fleet's poller.
`commands.buttons`: every button (start, promote, idle alert, review). `commands.admin`: the
one middleware that lets only admins start, stop, train, promote and export, and the one
`@app.error` handler. `review` and `promote` answer straight from their services.
"""

from __future__ import annotations

from dataclasses import astuple
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.core.errors import AwsFailure
from bot.core.learning.export import ExportResult
from bot.core.learning.reviewing import StatusWithFigures
from bot.core.ports import Notice
from bot.core.training_data import S3Uri
from bot.services import Services
from bot.slack.blocks import render
from bot.slack.escaping import user_text
from bot.slack.fleet import aws_words
from bot.slack.permissions import Admins
from commands import admin, buttons, parser
from commands.admin import answered, apologise
from commands.parser import Export, Help, Promote, Review, Start, Status, Stop, Train, parse

STATUS_REVIEW_DAYS = 30
NOTHING_TO_EXPORT = (
    "There are no reviewed images to export yet: reviewers label verdicts with the buttons "
    "under them (`CXR_REVIEWERS`)."
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
            await ack(text=parsed.usage)
            return
        await ack(text=slow_note(services, parsed) or "")
        user, channel = command.get("user_id", ""), command.get("channel_id", "")
        rendered = render(await answer(services, parsed, user, channel))
        await respond(text=rendered.text, blocks=rendered.blocks or None, response_type="ephemeral")


def slow_note(services: Services, command: parser.Command) -> str | None:
    """What a slow command says at once. Not before the refusals that need no I/O to decide
    (no promoter, no Rekognition project, not an S3 location): they answer at once. Those that
    need a look first (nothing to export, a training under way) still follow the note."""
    note, lifecycle = SLOW.get(type(command)), services.lifecycle
    target = str(astuple(command)[0]) if note else ""
    if isinstance(command, Promote) and services.promoter is None:
        return None
    if isinstance(command, Train) and not (lifecycle and lifecycle.rekognition):
        return None
    if isinstance(command, Train | Export) and not _is_s3(target):
        return None
    return note.format(user_text(target)) if note else None


def _is_s3(text: str) -> bool:
    try:
        S3Uri.parse(text)
    except ValueError:
        return False
    return True


async def answer(services: Services, command: parser.Command, user: str, channel: str) -> Notice:
    """What `/cxr <command>` answers (for admins only, where `commands.admin` says so)."""
    lifecycle = services.lifecycle
    assert lifecycle is not None  # always attached (local-only too)
    if isinstance(command, Status):  # with the served version and the last 30 days' figures
        return StatusWithFigures(
            status=await lifecycle.status(),
            report=await services.reviewing.report(STATUS_REVIEW_DAYS),
            served=await services.serving.served(),
            configured_arn=services.settings.cxr_project_version_arn,
            promotion=await services.serving.in_flight(),
        )
    if isinstance(command, Review):
        return await services.reviewing.report(command.days)
    if isinstance(command, Export):
        return await export(services, command.destination, user)
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


async def export(services: Services, destination: str, user: str) -> Notice:
    """The reviewed images, de-identified, under `destination` (for `/cxr train`)."""
    try:
        target = S3Uri.parse(destination)
    except ValueError as exc:
        return ExportResult(text=f"I can't write there: {exc}")
    if not await services.exporter.exportable():
        return ExportResult(text=NOTHING_TO_EXPORT)
    from bot.adapters.export_sinks import S3Sink

    try:
        sink = S3Sink(services.aws.s3, target.bucket, target.prefix)
        result = await services.exporter.export(sink, str(target))
    except Exception as exc:  # credentials, permissions, a missing bucket
        return ExportResult(text=f"I couldn't write to {target}: {aws_words(AwsFailure.of(exc))}")
    written = f"ok: {sum(result.written.values())} written, {len(result.missing)} not fetched"
    await services.audit.record(services.clock.now(), user, "export", str(target), written)
    return result
