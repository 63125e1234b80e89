"""The cost guard in Slack: idle alerts with their buttons, reminders, stops, the schedule and
the daily spend summary."""

from __future__ import annotations

from typing import Any

from bot.core.cost_notices import (
    KEEP_1H,
    KEEP_4H,
    OPEN,
    SNOOZED,
    STOP,
    STOP_FAILED,
    IdleAlert,
    IdleFollowUp,
    ModelStopped,
    ScheduleNotice,
    SpendSummary,
    StopFailed,
    local_time,
    sentence,
)
from bot.core.pricing import duration, usd
from bot.slack.blocks import Rendered, actions, button, context, escape, render, section

# Slack action_ids: "cost_guard:<action>", the value is the episode id.
ACTION_PREFIX = "cost_guard:"

BUTTON_LABELS = {STOP: "Stop now", KEEP_1H: "Keep running 1 h", KEEP_4H: "Keep running 4 h"}

# Alert states that stay open, noted under the facts with their emoji.
OUTCOME_EMOJI = {SNOOZED: ":zzz:", STOP_FAILED: ":warning:"}


def action_id(action: str) -> str:
    return ACTION_PREFIX + action


def fields(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {
        "type": "section",
        "fields": [{"type": "mrkdwn", "text": f"*{label}*\n{value}"} for label, value in pairs],
    }


def _stop_confirm(alert: IdleAlert) -> dict[str, Any]:
    return {
        "title": {"type": "plain_text", "text": "Stop the model?"},
        "text": {
            "type": "mrkdwn",
            "text": (
                f"*{escape(alert.version_name)}* stops serving until someone starts it again "
                "(a start takes a few minutes)."
            ),
        },
        "confirm": {"type": "plain_text", "text": "Stop it"},
        "deny": {"type": "plain_text", "text": "Cancel"},
    }


@render.register
def _(alert: IdleAlert) -> Rendered:
    name = f"*{escape(alert.version_name)}*"
    if alert.state in (OPEN, SNOOZED, STOP_FAILED):
        head = (
            f":hourglass_flowing_sand: Idle model: {name} has served no request for "
            f"*{duration(alert.idle_seconds)}* and is still running."
        )
    else:
        head = f":white_check_mark: Idle model {name}: {alert.outcome_line()}."
    blocks = [
        section(head),
        fields(
            ("Inference units", str(alert.units)),
            ("Cost", f"{usd(alert.hourly)} per hour"),
            ("Idle since", local_time(alert.idle_since, alert.zone, day=True)),
            ("Spent idle", usd(alert.idle_cost)),
        ),
    ]
    notes = []
    if alert.state in OUTCOME_EMOJI:
        notes.append(f"{OUTCOME_EMOJI[alert.state]} {sentence(alert.outcome_line())}.")
    if alert.state == OPEN:
        notes.append(
            " ".join(
                [
                    f"Alerted after {alert.threshold_minutes:g} min without a request.",
                    *alert.sight.sentences(alert.auto_stop_at, alert.zone),
                ]
            )
        )
    if notes:
        blocks.append(context(*notes))
    if alert.actions:
        elements = []
        for name_ in alert.actions:
            style = "danger" if name_ == STOP else None
            confirm = _stop_confirm(alert) if name_ == STOP else None
            elements.append(
                button(
                    BUTTON_LABELS[name_],
                    action_id(name_),
                    str(alert.episode_id),
                    style=style,
                    confirm=confirm,
                )
            )
        blocks.append(actions(f"cost_guard:{alert.episode_id}", *elements))
    return Rendered(text=alert.text, blocks=blocks)


@render.register
def _(notice: IdleFollowUp | StopFailed | ScheduleNotice) -> Rendered:
    """Notices that are one paragraph: their text behind an emoji."""
    warning = isinstance(notice, StopFailed) or (
        isinstance(notice, ScheduleNotice) and not notice.ok
    )
    emoji = ":warning:" if warning else ":alarm_clock:"
    return Rendered(text=notice.text, blocks=[section(f"{emoji} {escape(notice.text)}")])


@render.register
def _(notice: ModelStopped) -> Rendered:
    blocks = [
        section(f":octagonal_sign: *{escape(notice.headline())}.*"),
        fields(
            ("Ran", f"{duration(notice.run_seconds)} ({usd(notice.run_cost)})"),
            ("Idle", f"{duration(notice.idle_seconds)} ({usd(notice.idle_cost)})"),
            ("Inference units", str(notice.units)),
            ("Saves", f"{usd(notice.hourly)} per hour"),
        ),
        context(notice.savings() + ".", notice.restart_hint()),
    ]
    return Rendered(text=notice.text, blocks=blocks)


@render.register
def _(summary: SpendSummary) -> Rendered:
    blocks = [
        section(
            f":bar_chart: *Rekognition spend for {summary.day_label()}*: "
            f"{usd(summary.total)} ({summary.zone})"
        )
    ]
    if not summary.rows:
        blocks.append(context("No model ran that day."))
    for row in summary.rows[:20]:
        per_image = usd(row.cost_per_image) if row.cost_per_image is not None else "n/a"
        blocks.append(
            section(f"*{escape(row.version_name)}*: {row.running_phrase()}, *{usd(row.cost)}*")
        )
        blocks.append(
            context(
                "Requests served: "
                + ("unknown" if row.requests is None else str(row.requests))
                + f" · Images classified: {row.images} · Per classified image: {per_image}"
                + (f" · Idle (alerted): {usd(row.idle_cost)}" if row.idle_cost else "")
            )
        )
    if summary.running_now:
        blocks.append(context("Still running: " + ", ".join(map(escape, summary.running_now))))
    return Rendered(text=summary.text, blocks=blocks[:50])
