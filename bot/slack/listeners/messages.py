"""`message` events: files shared in a channel, a private channel or a DM become uploads."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.intake import is_image_like
from bot.core.ports import ImageRef, Upload
from bot.services import Services
from bot.slack.client import error_code

log = logging.getLogger(__name__)

DIRECT = ("im",)


def register(app: AsyncApp, services: Services) -> None:
    settings = services.settings

    @app.event({"type": "message", "subtype": "file_share"})
    async def on_file_share(event: dict[str, Any], client: AsyncWebClient) -> None:
        channel = event.get("channel", "")
        direct = event.get("channel_type") in DIRECT
        allowed = settings.cxr_allowed_channels
        if allowed and channel not in allowed and not direct:
            log.info("upload.channel_not_allowed", extra={"channel": channel})
            return
        upload = await upload_from_event(event, client, answer_all=direct)
        if upload is not None:
            services.intake.submit(upload)

    @app.event("message")
    async def on_other_message() -> None:
        """Plain messages, edits and deletions need no answer (acknowledged by Bolt)."""


async def upload_from_event(
    event: dict[str, Any], client: AsyncWebClient, *, answer_all: bool
) -> Upload | None:
    """The `Upload` in a file_share event, or None when it carries nothing for the bot.

    In channels only image-like files are answered (a shared spreadsheet is none of the
    bot's business); in a DM every file is, so nothing posted to the bot meets silence.
    """
    refs = []
    for file in event.get("files", []):
        if not isinstance(file, dict):
            continue
        unknown = False
        if file.get("file_access") == "check_file_info":  # Slack Connect: details on request
            details = await _file_info(client, str(file.get("id", "")))
            unknown = details is None  # can't tell what it is: answer rather than stay silent
            file = details or file
        ref = ImageRef(
            file_id=str(file.get("id") or ""),
            name=str(file.get("name") or file.get("title") or file.get("id") or "file"),
            # Details unknown: taken as a possible image, so the user hears why it can't be read.
            mimetype=str(file.get("mimetype") or ("image/unknown" if unknown else "")),
            size=_size(file.get("size")),
            url=str(file.get("url_private_download") or file.get("url_private") or ""),
            external=bool(file.get("is_external")) or file.get("mode") == "external",
        )
        if ref.file_id and (answer_all or unknown or is_image_like(ref)):
            refs.append(ref)
    if not refs:
        return None
    return Upload(
        channel=event["channel"],
        ts=event["ts"],
        thread_ts=event.get("thread_ts") or event["ts"],
        user=event.get("user", ""),
        files=tuple(refs),
    )


def _size(value: Any) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


async def _file_info(client: AsyncWebClient, file_id: str) -> dict[str, Any] | None:
    """The file's details, or None when Slack can't say (any failure, whatever its body)."""
    try:
        response = await client.files_info(file=file_id)
        file = response.get("file")
    except Exception as exc:
        log.warning("files_info.failed", extra={"file_id": file_id, "error": error_code(exc)})
        return None
    return file if isinstance(file, dict) else None
