"""The `/cxr` surface's buttons, each acknowledged at once, then acted on through its service:
Start / Cancel under a `/cxr start` proposal and Promote / Cancel / Stop the old version under
a `/cxr promote` one (admins only: `commands.admin`), each replaced in place by what happened;
Stop now / Keep running on an idle alert, which the cost guard updates itself (the presser
hears only what the alert can't say); the review buttons under each verdict (reviewers only:
checked here) and "Post chart" under `/cxr review`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.learning.reviewing import Reviewed
from bot.core.ports import Notice
from bot.ml.review_chart import confusion_png
from bot.services import Services
from bot.slack.blocks import render
from bot.slack.blocks.promote import CANCEL, CONFIRM, STOP_OLD
from bot.slack.blocks.review import (
    POST_CHART,
    REVIEW_ACTION,
    case_of,
    label_of,
    report_text,
    with_review,
)
from bot.slack.fleet import ACTION_PREFIX, CANCEL_START, CONFIRM_START, mrkdwn
from bot.slack.permissions import Admins
from commands.admin import answered, value_of

log = logging.getLogger(__name__)

EXPIRED = "This button no longer works. Run `/cxr {}` again."
UNKNOWN_ALERT = "I don't know that alert."
NO_GUARD = "The cost guard isn't running, so this alert is stale."
STALE = "I have no verdict on record for this image any more, so it can't be reviewed."
UNSHOWN = "Your review ({}) is recorded, but I couldn't update the message."


def one_of(*action_ids: str) -> re.Pattern[str]:
    return re.compile("^(" + "|".join(map(re.escape, action_ids)) + ")$")


class Reviewers(Admins):
    """`CXR_REVIEWERS`: user IDs and user groups, looked up like the admins."""

    def refusal(self, user_id: str | None = None) -> str:
        if not self.configured:
            return "Reviews are off here: no reviewers are configured (`CXR_REVIEWERS`)."
        return (
            "Thanks for looking! Only the configured reviewers can confirm or correct verdicts. "
            "Ask one of them, or an admin to add you."
        )


def register(app: AsyncApp, services: Services) -> None:
    reviewers = Reviewers(services.settings.cxr_reviewers, app.client)

    @app.action(one_of(CONFIRM_START, CANCEL_START))
    @answered
    async def start_press(ack, body: dict[str, Any], action: dict[str, Any], respond) -> None:
        await ack()
        lifecycle, user, value = services.lifecycle, _user(body), _start_value(action)
        assert lifecycle is not None
        if value is None:
            await _ephemeral(respond, EXPIRED.format("start"), replace_original=True)
            return
        if action["action_id"] == CONFIRM_START:
            arn, low, high = value["arn"], value["min"], value["max"]
            notice = await lifecycle.confirm_start(user, _channel(body), arn, low, high)
        else:
            notice = await lifecycle.cancel_start(user, str(value.get("name") or value["arn"]))
        await _replace(respond, notice)

    @app.action(one_of(CONFIRM, CANCEL, STOP_OLD))
    @answered
    async def promote_press(ack, body: dict[str, Any], action: dict[str, Any], respond) -> None:
        await ack()
        user, channel, value = _user(body), _channel(body), value_of(action)
        promoter, lifecycle = services.promoter, services.lifecycle
        if value is None or promoter is None or lifecycle is None:
            await _ephemeral(respond, EXPIRED.format("promote VERSION"))
            return
        get = value.get
        if action["action_id"] == CONFIRM:
            step, units, why = int(get("step", 1)), int(get("units", 1)), str(get("why") or "")
            notice = await promoter.confirm(
                user,
                channel,
                str(value["arn"]),
                step,
                units,
                worse=bool(get("worse")),
                served_name=str(get("served") or ""),
                summary=why,
            )
        elif action["action_id"] == CANCEL:
            notice = await promoter.cancel(user, str(get("name") or ""))
        else:
            notice = await lifecycle.stop(user, channel, str(value["arn"]))
        await _replace(respond, notice)

    @app.action(re.compile("^" + re.escape(ACTION_PREFIX)))
    @answered
    async def alert_press(ack, body: dict[str, Any], action: dict[str, Any], respond) -> None:
        await ack()
        name = action.get("action_id", "").removeprefix(ACTION_PREFIX)
        value, guard = str(action.get("value", "")), services.cost_guard
        if not value.isdigit() or int(value) <= 0:
            text = UNKNOWN_ALERT
        elif guard is None:
            text = NO_GUARD
        else:
            result = await guard.press(int(value), name, _user(body))
            extra = {"action": name, "user": _user(body), "episode": int(value), "ok": result.ok}
            log.info("cost_guard.button", extra=extra)
            text = " ".join(mrkdwn(result))
        if text:
            await _ephemeral(respond, text)

    @app.action(REVIEW_ACTION)
    @answered
    async def review_press(
        ack, body: dict[str, Any], action: dict[str, Any], respond, client: AsyncWebClient
    ) -> None:
        await ack()
        user, channel, reviewing = _user(body), _channel(body), services.reviewing
        label = label_of(action.get("action_id", ""))
        case = case_of(channel, action.get("value", ""))
        if label is None or case is None or not await reviewing.known(case):
            await _ephemeral(respond, STALE)
        elif not await reviewers.allows(user):
            await reviewing.refused(case, user)
            await _ephemeral(respond, reviewers.refusal())
        else:
            reviewed = await reviewing.review(case, user, label)
            log.info("review.recorded", extra={"file_id": case.file_id, "label": label.value})
            if not await _show_review(client, body, channel, case.file_id, reviewed):
                await _ephemeral(respond, UNSHOWN.format(label.value))

    @app.action(POST_CHART)
    @answered
    async def post_chart(
        ack, body: dict[str, Any], action: dict[str, Any], respond, client: AsyncWebClient
    ) -> None:
        await ack()
        days = (value_of(action) or {}).get("days")
        report = await services.reviewing.report(int(days) if days else None)
        title = "Reviewed verdicts, " + (f"last {report.days} days" if report.days else "all time")
        channel = services.settings.cxr_ops_channel
        if not channel:
            channel = (await client.conversations_open(users=_user(body)))["channel"]["id"]
        await client.files_upload_v2(
            channel=channel,
            initial_comment=report_text(report),
            file_uploads=[
                {
                    "filename": "reviewed-verdicts.png",
                    "content": confusion_png([f for f in report.figures if f.reviewed], title),
                    "title": title,
                    "alt_txt": "Confusion matrices of the reviewed verdicts per model version",
                }
            ],
        )
        await _ephemeral(respond, f"Posted the chart in <#{channel}>.")


async def _show_review(
    client: AsyncWebClient, body: dict[str, Any], channel: str, file_id: str, reviewed: Reviewed
) -> bool:
    """Update the verdict in place with who reviewed it. The update passes the message's
    metadata (the reply's upload key and part) back explicitly: Slack's reference doesn't say
    that chat.update keeps it when left out, and the interaction payload need not carry it, so
    it is read back from the thread."""
    message = body.get("message") or {}
    ts = message.get("ts") or (body.get("container") or {}).get("message_ts", "")
    update: dict[str, Any] = {
        "channel": channel,
        "ts": ts,
        "text": message.get("text") or "Verdict",
        "blocks": with_review(message.get("blocks") or [], file_id, reviewed),
    }
    metadata = message.get("metadata") or await _metadata_of(
        client, channel, message.get("thread_ts") or ts, ts
    )
    try:
        await client.chat_update(**update, **({"metadata": metadata} if metadata else {}))
        return True
    except SlackApiError as exc:
        log.warning("review.update_failed", extra={"error": exc.response.get("error")})
        return False


async def _metadata_of(
    client: AsyncWebClient, channel: str, thread_ts: str, ts: str
) -> dict[str, Any] | None:
    """A message's metadata, from conversations.replies with include_all_metadata (the SDK's
    iteration follows the cursor)."""
    try:
        replies = await client.conversations_replies(
            channel=channel, ts=thread_ts, include_all_metadata=True, limit=200
        )
        async for page in replies:
            for found in page.get("messages") or []:
                if found.get("ts") == ts:
                    return found.get("metadata") or None
    except SlackApiError as exc:
        log.warning("review.metadata_unread", extra={"error": exc.response.get("error")})
    return None


def _user(body: dict[str, Any]) -> str:
    return (body.get("user") or {}).get("id", "")


def _channel(body: dict[str, Any]) -> str:
    container = body.get("container") or {}
    return (body.get("channel") or {}).get("id") or container.get("channel_id", "")


def _start_value(action: dict[str, Any]) -> dict[str, Any] | None:
    """A start proposal's version and units, or None."""
    value = value_of(action)
    try:
        if value is not None and isinstance(value.get("arn"), str):
            high = value.get("max")
            return {**value, "min": int(value["min"]), "max": None if high is None else int(high)}
    except (KeyError, TypeError, ValueError):
        pass
    return None


async def _replace(respond: Any, notice: Notice) -> None:
    rendered = render(notice)
    await respond(text=rendered.text, blocks=rendered.blocks, replace_original=True)


async def _ephemeral(respond: Any, text: str, *, replace_original: bool = False) -> None:
    await respond(text=text, response_type="ephemeral", replace_original=replace_original)
