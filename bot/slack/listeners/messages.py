"""`message` events: files shared in a channel, a private channel or a DM become uploads."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.intake import is_image_like
from bot.core.ports import ImageRef, Upload
from bot.services import Services

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
        if file.get("file_access") == "check_file_info":  # Slack Connect: details on request
            file = await _file_info(client, file.get("id", "")) or file
        ref = ImageRef(
            file_id=file.get("id", ""),
            name=file.get("name") or file.get("title") or file.get("id", "file"),
            mimetype=file.get("mimetype", ""),
            size=int(file.get("size") or 0),
            url=file.get("url_private_download") or file.get("url_private") or "",
        )
        if ref.file_id and (answer_all or is_image_like(ref)):
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


async def _file_info(client: AsyncWebClient, file_id: str) -> dict[str, Any] | None:
    try:
        response = await client.files_info(file=file_id)
    except SlackApiError as exc:
        log.warning("files_info.failed", extra={"error": exc.response.get("error")})
        return None
    return response.get("file")
