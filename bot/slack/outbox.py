"""The core's `Outbox` port on the Slack Web API."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.errors import Undeliverable
from bot.core.ports import Notice, PostedMessage
from bot.slack.blocks import render, render_parts
from bot.slack.client import error_code
from bot.slack.escaping import plain

log = logging.getLogger(__name__)

# Reactions that are already there (or already gone) are not errors worth a retry.
BENIGN_REACTION_ERRORS = {"already_reacted", "no_reaction", "message_not_found"}
# Errors no retry can fix: the message will never be accepted.
PERMANENT_POST_ERRORS = {
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "msg_too_long",
    "no_permission",
    "restricted_action",
    "invalid_blocks",
}


class SlackOutbox:
    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def post(
        self, channel: str, notice: Notice, *, thread_ts: str | None = None
    ) -> PostedMessage:
        posted: PostedMessage | None = None
        for rendered in render_parts(notice):  # a reply too big for one message: in parts
            try:
                response = await self.client.chat_postMessage(
                    channel=channel,
                    text=rendered.text,
                    blocks=rendered.blocks or None,
                    thread_ts=thread_ts,
                    unfurl_links=False,
                    unfurl_media=False,
                )
            except SlackApiError as exc:
                error = error_code(exc)
                if error in PERMANENT_POST_ERRORS:
                    raise Undeliverable(error) from exc
                raise
            posted = posted or PostedMessage(channel=response["channel"], ts=response["ts"])
        assert posted is not None
        return posted

    async def update(self, message: PostedMessage, notice: Notice) -> None:
        rendered = render(notice)
        await self.client.chat_update(
            channel=message.channel, ts=message.ts, text=rendered.text, blocks=rendered.blocks
        )

    async def react(self, channel: str, ts: str, add: str, remove: str | None = None) -> None:
        for method, name in (
            (self.client.reactions_remove, remove),
            (self.client.reactions_add, add),
        ):
            if not name:
                continue
            try:
                await method(channel=channel, timestamp=ts, name=name)
            except SlackApiError as exc:
                if error_code(exc) not in BENIGN_REACTION_ERRORS:
                    raise

    async def attach_images(
        self, channel: str, thread_ts: str, images: Sequence[tuple[str, bytes]]
    ) -> None:
        await self.client.files_upload_v2(
            channel=channel,
            thread_ts=thread_ts,
            file_uploads=[
                {
                    "filename": plain(name),
                    "content": data,
                    "title": plain(name),
                    "alt_txt": "Heatmap",
                }
                for name, data in images
            ],
        )
