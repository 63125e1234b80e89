"""`message` events: files shared in a channel, a private channel or a DM become uploads.

An upload is recorded before Slack gets its acknowledgement: `record_before_ack` is a global
middleware (Bolt's `before_authorize`), so it runs ahead of Bolt's automatic ack for events,
while `/cxr` and button acks never wait for it (it only looks at file_share events). When the
claim cannot be written, the request is answered 503 (HTTP) or left unacknowledged (Socket
Mode), and Slack delivers it again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse

from bot.core.intake import ClaimFailed, is_image_like
from bot.core.ports import ImageRef, Upload
from bot.services import Services
from bot.slack.files_info import file_size, is_external

log = logging.getLogger(__name__)

DIRECT = ("im",)
CLAIMED = "cxr_upload"  # the context key the middleware hands the claimed upload over in


def record_before_ack(
    services: Services, is_self: Callable[[dict[str, Any]], bool]
) -> Callable[..., Awaitable[BoltResponse | None]]:
    """The claim, as a middleware for `AsyncApp(before_authorize=…)`: after the signature
    check, before anything that needs Slack (auth.test), so an upload is recorded even while
    Slack's API is down, and ahead of Bolt's automatic ack."""
    settings = services.settings

    async def record_before_ack(
        body: dict[str, Any], context: dict[str, Any], next: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        event = body.get("event") or {}
        if (
            body.get("type") == "event_callback"
            and event.get("type") == "message"
            and event.get("subtype") == "file_share"
            and not is_self(event)  # the bot's own heatmap uploads
        ):
            channel = event.get("channel", "")
            direct = event.get("channel_type") in DIRECT
            allowed = settings.cxr_allowed_channels
            if allowed and channel not in allowed and not direct:
                log.info("upload.channel_not_allowed", extra={"channel": channel})
            elif (upload := upload_from_event(event, answer_all=direct)) is not None:
                try:
                    if await services.intake.accept(upload):
                        context[CLAIMED] = upload
                except ClaimFailed:
                    return BoltResponse(status=503, body="")
        return await next()

    return record_before_ack


def register(app: AsyncApp, services: Services) -> None:
    @app.event({"type": "message", "subtype": "file_share"})
    async def on_file_share(context: dict[str, Any]) -> None:
        """Runs after the ack: start answering the upload the middleware claimed."""
        upload = context.get(CLAIMED)
        if upload is not None:
            services.intake.start(upload)

    @app.event("message")
    async def on_other_message() -> None:
        """Plain messages, edits and deletions need no answer (acknowledged by Bolt)."""


def upload_from_event(event: dict[str, Any], *, answer_all: bool) -> Upload | None:
    """The `Upload` in a file_share event, or None when it carries nothing for the bot.

    In channels only image-like files are answered (a shared spreadsheet is none of the
    bot's business); in a DM every file is, so nothing posted to the bot meets silence.
    A Slack Connect file arrives as only its ID: it is kept, and looked up with files.info
    after the claim (intake drops it then if it is not an image in a channel).
    """
    files = event.get("files")
    channel, ts = event.get("channel"), event.get("ts")
    if not isinstance(files, list) or not isinstance(channel, str) or not isinstance(ts, str):
        return None  # not a shape Slack sends: nothing to answer, nowhere to answer it
    refs = []
    for file in files:
        if not isinstance(file, dict):
            continue
        unknown = file.get("file_access") == "check_file_info"
        ref = ImageRef(
            file_id=str(file.get("id") or ""),
            name=str(file.get("name") or file.get("title") or file.get("id") or "file"),
            # Details unknown until files.info: taken as a possible image, so that if the
            # lookup fails the user hears why the file can't be read.
            mimetype=str(file.get("mimetype") or ("image/unknown" if unknown else "")),
            size=file_size(file.get("size")),
            url=str(file.get("url_private_download") or file.get("url_private") or ""),
            external=is_external(file),
        )
        if ref.file_id and (answer_all or unknown or is_image_like(ref)):
            refs.append(ref)
    if not refs:
        return None
    thread_ts = event.get("thread_ts")
    return Upload(
        channel=channel,
        ts=ts,
        thread_ts=thread_ts if isinstance(thread_ts, str) and thread_ts else ts,
        user=str(event.get("user") or ""),
        files=tuple(refs),
        direct=answer_all,
    )
