"""The core's `Outbox` port on the Slack Web API.

Replies to uploads carry message metadata, the only record Slack keeps that the bot can read
back: event type `cxr_reply`, payload `{"upload": "<channel>:<ts>", "part": n}` (Slack IDs and a
number, nothing about the patient: metadata is readable by anyone who can read the message).
Before posting a reply that may already be (partly) in its thread, the outbox reads the thread
with `conversations.replies(include_all_metadata=true)` and posts only the missing parts.
That method is Tier 3 (50+ calls a minute) for internal apps, which is what this bot is;
commercially distributed apps outside the Marketplace get about one call a minute, too few.
It is called only for resumed uploads and after a failed post, never on the normal path.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.errors import Undeliverable
from bot.core.ports import Notice, PostedMessage
from bot.slack.blocks import Rendered, render_parts
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


REPLY_EVENT_TYPE = "cxr_reply"


def reply_parts(notice: Notice) -> list[Rendered]:
    """A notice's message parts, in posting order (a verdict reply may need several)."""
    return render_parts(notice)


def reply_metadata(key: str, part: int) -> dict[str, Any]:
    return {"event_type": REPLY_EVENT_TYPE, "event_payload": {"upload": key, "part": part}}


class SlackOutbox:
    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def post_reply(
        self, channel: str, thread_ts: str, notice: Notice, *, key: str, check_thread: bool
    ) -> int:
        parts = reply_parts(notice)
        present = await self.parts_in_thread(channel, thread_ts, key) if check_thread else set()
        posted = 0
        for number, part in enumerate(parts, start=1):
            if number in present:
                continue
            await self._post(channel, part, thread_ts, metadata=reply_metadata(key, number))
            posted += 1
        if present:
            log.info(
                "reply.parts_already_posted",
                extra={"upload": key, "present": sorted(present), "posted": posted},
            )
        return posted

    async def parts_in_thread(self, channel: str, thread_ts: str, key: str) -> set[int]:
        """The part numbers of `key`'s reply already in the thread (read with metadata)."""
        present: set[int] = set()
        cursor: str | None = None
        while True:
            response = await self.client.conversations_replies(
                channel=channel,
                ts=thread_ts,
                include_all_metadata=True,
                limit=200,
                cursor=cursor,
            )
            for message in response.get("messages") or []:
                metadata = message.get("metadata") or {}
                payload = metadata.get("event_payload") or {}
                if metadata.get("event_type") == REPLY_EVENT_TYPE and payload.get("upload") == key:
                    try:
                        present.add(int(payload.get("part")))
                    except (TypeError, ValueError):
                        continue
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not response.get("has_more") or not cursor:
                return present

    async def post(
        self, channel: str, notice: Notice, *, thread_ts: str | None = None
    ) -> PostedMessage:
        parts = reply_parts(notice)
        first = await self._post(channel, parts[0], thread_ts)
        for part in parts[1:]:
            await self._post(channel, part, thread_ts)
        return first

    async def _post(
        self,
        channel: str,
        rendered: Rendered,
        thread_ts: str | None,
        metadata: dict[str, Any] | None = None,
    ) -> PostedMessage:
        try:
            response = await self.client.chat_postMessage(
                channel=channel,
                text=rendered.text,
                blocks=rendered.blocks or None,
                thread_ts=thread_ts,
                unfurl_links=False,
                unfurl_media=False,
                metadata=metadata,
            )
        except SlackApiError as exc:
            error = error_code(exc)  # whatever the body: JSON, a proxy's text, nothing
            if error in PERMANENT_POST_ERRORS:
                raise Undeliverable(error) from exc
            raise
        return PostedMessage(channel=response["channel"], ts=response["ts"])

    async def update(self, message: PostedMessage, notice: Notice) -> None:
        rendered = reply_parts(notice)[0]
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
