"""Review buttons under each verdict, and the "Post chart" button under `/cxr review`.

A reviewer's press is recorded (and audited) first; then the verdict message is updated in
place with who reviewed it and the label. The update passes the message's metadata (the reply's
upload key and part number) back explicitly: Slack's reference doesn't say that chat.update
keeps it when left out, and the interaction payload need not carry it, so it is read back from
the thread (conversations.replies with include_all_metadata). Anyone else is thanked and told
who can review.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.ml.review_chart import confusion_png
from bot.services import Services
from bot.slack.blocks import UNEXPECTED_FAILURE
from bot.slack.blocks.review import (
    POST_CHART,
    REVIEW_ACTION,
    case_of,
    label_of,
    report_text,
    with_review,
)
from bot.slack.permissions import Admins

log = logging.getLogger(__name__)

STALE = "I have no verdict on record for this image any more, so it can't be reviewed."


class Reviewers(Admins):
    """`CXR_REVIEWERS`: user IDs and user groups, looked up like the admins."""

    def refusal(self) -> str:
        if not self.configured:
            return "Reviews are off here: no reviewers are configured (`CXR_REVIEWERS`)."
        return (
            "Thanks for looking! Only the configured reviewers can confirm or correct verdicts. "
            "Ask one of them, or an admin to add you."
        )


def register(app: AsyncApp, services: Services) -> None:
    reviewers = Reviewers(services.settings.cxr_reviewers, app.client)

    @app.action(REVIEW_ACTION)
    async def on_review(
        ack, body: dict[str, Any], action: dict[str, Any], respond, client: AsyncWebClient
    ) -> None:
        await ack()
        user = (body.get("user") or {}).get("id", "")
        container = body.get("container") or {}
        channel = (body.get("channel") or {}).get("id") or container.get("channel_id", "")
        label = label_of(action.get("action_id", ""))
        case = case_of(channel, action.get("value", ""))
        reviewing = services.reviewing
        if label is None or case is None or not await reviewing.known(case):
            await _ephemeral(respond, STALE)
            return
        if not await reviewers.allows(user):
            await reviewing.refused(case, user)
            await _ephemeral(respond, reviewers.refusal())
            return
        reviewed = await reviewing.review(case, user, label)
        log.info("review.recorded", extra={"file_id": case.file_id, "label": label.value})
        message = body.get("message") or {}
        update: dict[str, Any] = {
            "channel": channel,
            "ts": message.get("ts") or container.get("message_ts", ""),
            "text": message.get("text") or "Verdict",
            "blocks": with_review(message.get("blocks") or [], case.file_id, reviewed),
        }
        metadata = message.get("metadata") or await _metadata_of(
            client, channel, message.get("thread_ts") or update["ts"], update["ts"]
        )
        if metadata:
            update["metadata"] = metadata
        try:
            await client.chat_update(**update)
        except SlackApiError as exc:
            log.warning("review.update_failed", extra={"error": exc.response.get("error")})
            await _ephemeral(
                respond,
                f"Your review ({label.value}) is recorded, but I couldn't update the message.",
            )

    @app.action(POST_CHART)
    async def on_post_chart(
        ack, body: dict[str, Any], action: dict[str, Any], respond, client: AsyncWebClient
    ) -> None:
        await ack()
        user = (body.get("user") or {}).get("id", "")
        try:
            days = json.loads(action.get("value") or "{}").get("days")
            report = await services.reviewing.report(int(days) if days else None)
            window = f"last {report.days} days" if report.days else "all time"
            png = confusion_png(
                [f for f in report.figures if f.reviewed], f"Reviewed verdicts, {window}"
            )
            channel = services.settings.cxr_ops_channel
            if not channel:
                opened = await client.conversations_open(users=user)
                channel = opened["channel"]["id"]
            await client.files_upload_v2(
                channel=channel,
                initial_comment=report_text(report),
                file_uploads=[
                    {
                        "filename": "reviewed-verdicts.png",
                        "content": png,
                        "title": f"Reviewed verdicts, {window}",
                        "alt_txt": "Confusion matrices of the reviewed verdicts per model version",
                    }
                ],
            )
        except Exception:
            log.exception("review.chart_failed")
            await _ephemeral(respond, UNEXPECTED_FAILURE)
            return
        await _ephemeral(respond, f"Posted the chart in <#{channel}>.")


async def _metadata_of(
    client: AsyncWebClient, channel: str, thread_ts: str, ts: str
) -> dict[str, Any] | None:
    """The message's metadata, read back from its thread: interaction payloads need not carry
    it, and the update passes it explicitly so the reply keeps its upload key and part."""
    try:
        cursor = None
        while True:
            response = await client.conversations_replies(
                channel=channel, ts=thread_ts, include_all_metadata=True, limit=200, cursor=cursor
            )
            for found in response.get("messages") or []:
                if found.get("ts") == ts:
                    return found.get("metadata") or None
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not response.get("has_more") or not cursor:
                return None
    except SlackApiError as exc:
        log.warning("review.metadata_unread", extra={"error": exc.response.get("error")})
        return None


async def _ephemeral(respond, text: str) -> None:
    await respond(text=text, response_type="ephemeral", replace_original=False)
