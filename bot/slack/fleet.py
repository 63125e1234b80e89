"""The model fleet in Slack: Block Kit for every fleet notice, built with
`slack_sdk.models.blocks` (the SDK checks the shapes; texts are cut to Slack's limits here).

`/cxr` answers (status, the start proposal and its buttons, outcomes of operations), idle
alerts with their buttons, reminders, stops, the schedule and the daily spend summary. The
fallback `text` carries the same facts as the blocks, with Slack mentions, for notifications,
screen readers and the local shell (which renders these same blocks).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import partial
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.core.fleet.guard_notices import (
    KEEP_1H,
    KEEP_4H,
    OPEN,
    SNOOZED,
    STOP,
    STOP_FAILED,
    IdleAlert,
    IdleFollowUp,
    ScheduleNotice,
    SpendSummary,
    StopFailed,
    local_time,
    sentence,
)
from bot.core.fleet.guard_notices import ModelStopped as GuardStopped
from bot.core.fleet.notices import (
    Busy,
    Described,
    LifecycleReply,
    ModelRunning,
    ModelStartFailed,
    ModelStopFailed,
    ModelStopped,
    StartCancelled,
    StartProposal,
    StartRequested,
    StopRequested,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRefused,
    percent,
)
from bot.core.fleet.status import StatusReport, VersionRow, audit_line, card_lines, version_line
from bot.core.pricing import duration, usd
from bot.slack.blocks import Rendered, render
from bot.slack.escaping import escape, user_text

# Buttons. A start proposal's value carries the version and units (JSON); an idle alert's
# action_ids are "cost_guard:<action>" and the value is the episode id.
START_BLOCK = "lifecycle_start"
CONFIRM_START = "lifecycle.start.confirm"
CANCEL_START = "lifecycle.start.cancel"
ACTION_PREFIX = "cost_guard:"
BUTTON_LABELS = {STOP: "Stop now", KEEP_1H: "Keep running 1 h", KEEP_4H: "Keep running 4 h"}

TONE_EMOJI = {
    "ok": ":white_check_mark:",
    "info": ":information_source:",
    "refused": ":information_source:",
    "busy": ":hourglass_flowing_sand:",
    "error": ":warning:",
}
OUTCOME_EMOJI = {SNOOZED: ":zzz:", STOP_FAILED: ":warning:"}  # alert states that stay open
MAX_BLOCKS = 50

_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_CHANNEL = re.compile(r"^[CG][A-Z0-9]{2,}$")


# --- Block Kit, through the SDK's models -----------------------------------------------------
def _md(text: str, limit: int = 3000) -> MarkdownTextObject:
    return MarkdownTextObject(text=text[:limit])


def section(text: str) -> Block:
    return SectionBlock(text=_md(text))


def fields(*pairs: tuple[str, str]) -> Block:
    return SectionBlock(fields=[_md(f"*{label}*\n{value}", 2000) for label, value in pairs])


def context(*texts: str) -> Block:
    return ContextBlock(elements=[_md(t) for t in texts[:10]])


def button(
    text: str, action_id: str, value: str, style: str | None = None, confirm: Any = None
) -> ButtonElement:
    return ButtonElement(
        text=text[:75], action_id=action_id, value=value[:2000], style=style, confirm=confirm
    )


def rendered(text: str, blocks: list[Block]) -> Rendered:
    return Rendered(text=text, blocks=[b.to_dict() for b in blocks[:MAX_BLOCKS]])


def action_id(action: str) -> str:
    return ACTION_PREFIX + action


# --- mentions --------------------------------------------------------------------------------
def ref(identifier: str) -> str:
    """A Slack mention for a user or channel ID; anything else (e.g. "cost-guard") as is."""
    if _USER.match(identifier):
        return f"<@{identifier}>"
    if _CHANNEL.match(identifier):
        return f"<#{identifier}>"
    if identifier.startswith("D"):
        return "a direct message"
    return escape(identifier)


def slack_text(describe: Callable[[Callable[[str], str]], str]) -> str:
    """`describe(who)` as Slack mrkdwn: the words escaped, the IDs turned into mentions."""
    mentions: list[str] = []

    def token(identifier: str) -> str:
        mentions.append(ref(identifier))
        return f"\x00{len(mentions) - 1}\x00"

    text = escape(describe(token))
    return re.sub("\x00(\\d+)\x00", lambda m: mentions[int(m.group(1))], text)


# --- /cxr answers and the outcomes of operations ---------------------------------------------
def _simple(emoji: str, notice: Described) -> Rendered:
    """One section: the emoji, then the notice's own sentence."""
    text = slack_text(notice.describe)
    return rendered(text, [section(f"{emoji} {text}")])


ONE_SECTION: dict[type[Described], str] = {
    Busy: ":hourglass_flowing_sand:",
    StartRequested: ":rocket:",
    StartCancelled: ":information_source:",
    StopRequested: ":octagonal_sign:",
    ModelRunning: ":rocket:",
    ModelStartFailed: ":warning:",
    ModelStopped: ":zzz:",
    ModelStopFailed: ":warning:",
    TrainingFailed: ":warning:",
}
for _notice_type, _emoji in ONE_SECTION.items():
    render.register(_notice_type, partial(_simple, _emoji))


@render.register
def _(notice: LifecycleReply) -> Rendered:
    return _simple(TONE_EMOJI.get(notice.tone, ":information_source:"), notice)


@render.register
def _(notice: TrainingProgress) -> Rendered:
    return _simple(":bar_chart:" if notice.done else ":hourglass_flowing_sand:", notice)


@render.register
def _(notice: TrainingRefused) -> Rendered:
    blocks = [section(f":x: *I can't train from {user_text(notice.source)}:*")]
    for problem in notice.problems[: MAX_BLOCKS - 2]:
        items = "\n".join(f"• `{escape(item)}`" for item in problem.lines())
        blocks.append(section(escape(problem.title) + (f"\n{items}" if items else "")))
    blocks.append(context("Fix these and run `/cxr train` again; nothing was sent to Rekognition."))
    return rendered(slack_text(notice.describe), blocks)


@render.register
def _(notice: StartProposal) -> Rendered:
    text = slack_text(notice.describe)
    facts = [f"Version: *{escape(notice.version_name)}* ({notice.status})"]
    if notice.f1 is not None:
        facts.append(f"F1 {notice.f1:.3f}")
    value = json.dumps(notice.button_value)
    blocks = [
        section(f":moneybag: {text}"),
        context(" · ".join(facts) + " · prices are estimates from the configured rates"),
        ActionsBlock(
            block_id=START_BLOCK,
            elements=[
                button("Start it", CONFIRM_START, value, style="primary"),
                button("Cancel", CANCEL_START, value),
            ],
        ),
    ]
    return rendered(text, blocks)


@render.register
def _(notice: TrainingCompleted) -> Rendered:
    text = slack_text(notice.describe)
    head = f":white_check_mark: *Training {escape(notice.version_name)} finished*"
    if notice.f1 is not None:
        head += f": F1 *{notice.f1:.3f}*"
    blocks = [section(head)]
    if notice.labels:
        lines = [
            f"*{escape(m.label)}*: precision {percent(m.precision)}, recall {percent(m.recall)}"
            for m in notice.labels
        ]
        blocks.append(section("\n".join(lines)))
    blocks.append(context(text))
    return rendered(text, blocks)


@render.register
def _(report: StatusReport) -> Rendered:
    blocks = [section(f":robot_face: *Serving:* {escape(report.serving)}")]
    if report.project:
        title = f"*Rekognition project {escape(report.project)}*"
        if report.rows:
            lines = [_row_line(row) for row in report.rows]
            if report.hidden_versions:
                lines.append(f"… and {report.hidden_versions} older versions")
            blocks.append(section(title + "\n" + "\n".join(lines)))
        else:
            blocks.append(
                section(
                    f"{title}: no model versions yet. "
                    "Train one with `/cxr train s3://bucket/prefix`."
                )
            )
    if report.local_card is not None:
        blocks.append(section("\n".join(escape(line) for line in card_lines(report.local_card))))
    if report.operations:
        lines = [
            f":hourglass_flowing_sand: {op.kind} *{escape(op.version_name)}* ({op.phase}), "
            f"asked by {ref(op.user)} {op.started_at:%Y-%m-%d %H:%M} UTC"
            for op in report.operations
        ]
        blocks.append(section("*In progress*\n" + "\n".join(lines)))
    blocks.extend(context(escape(note)) for note in report.notes)
    if report.audit:
        audit = "\n".join(slack_text(partial(audit_line, a)) for a in report.audit)
        blocks.append(context("*Recent actions*\n" + audit))
    return rendered(slack_text(report.describe), blocks)


def _row_line(row: VersionRow) -> str:
    line = slack_text(lambda who: version_line(row, who))
    return f":arrow_forward: *{line}*" if row.serving else line


# --- the cost guard: alerts, reminders, stops, the schedule, the summary ---------------------
def _stop_confirm(alert: IdleAlert) -> ConfirmObject:
    return ConfirmObject(
        title="Stop the model?",
        text=_md(
            f"*{escape(alert.version_name)}* stops serving until someone starts it again "
            "(a start takes a few minutes)."
        ),
        confirm="Stop it",
        deny="Cancel",
    )


@render.register
def _(alert: IdleAlert) -> Rendered:
    name = f"*{escape(alert.version_name)}*"
    if alert.state in (OPEN, SNOOZED, STOP_FAILED):
        head = (
            f":hourglass_flowing_sand: Idle model: {name} has served no request for "
            f"*{duration(alert.idle_seconds)}* and is still running."
        )
    else:
        head = f":white_check_mark: Idle model {name}: {alert.outcome_line(ref)}."
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
        notes.append(f"{OUTCOME_EMOJI[alert.state]} {sentence(alert.outcome_line(ref))}.")
    if alert.state == OPEN:
        threshold = f"Alerted after {alert.threshold_minutes:g} min without a request."
        notes.append(" ".join([threshold, *alert.sight.sentences(alert.auto_stop_at, alert.zone)]))
    if notes:
        blocks.append(context(*notes))
    if alert.actions:
        elements = [
            button(
                BUTTON_LABELS[name_],
                action_id(name_),
                str(alert.episode_id),
                style="danger" if name_ == STOP else None,
                confirm=_stop_confirm(alert) if name_ == STOP else None,
            )
            for name_ in alert.actions
        ]
        blocks.append(ActionsBlock(block_id=f"cost_guard:{alert.episode_id}", elements=elements))
    return rendered(slack_text(alert.describe), blocks)


@render.register
def _(notice: IdleFollowUp | StopFailed | ScheduleNotice) -> Rendered:
    """Notices that are one paragraph: their text behind an emoji."""
    warning = isinstance(notice, StopFailed) or (
        isinstance(notice, ScheduleNotice) and not notice.ok
    )
    emoji = ":warning:" if warning else ":alarm_clock:"
    text = slack_text(notice.describe)
    return rendered(text, [section(f"{emoji} {text}")])


@render.register
def _(notice: GuardStopped) -> Rendered:
    blocks = [
        section(f":octagonal_sign: *{slack_text(notice.headline)}.*"),
        fields(
            ("Ran", f"{duration(notice.run_seconds)} ({usd(notice.run_cost)})"),
            ("Idle", f"{duration(notice.idle_seconds)} ({usd(notice.idle_cost)})"),
            ("Inference units", str(notice.units)),
            ("Saves", f"{usd(notice.hourly)} per hour"),
        ),
        context(notice.savings() + ".", notice.restart_hint()),
    ]
    return rendered(slack_text(notice.describe), blocks)


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
        requests = "unknown" if row.requests is None else str(row.requests)
        idle = f" · Idle (alerted): {usd(row.idle_cost)}" if row.idle_cost else ""
        blocks.append(
            section(f"*{escape(row.version_name)}*: {row.running_phrase()}, *{usd(row.cost)}*")
        )
        blocks.append(
            context(
                f"Requests served: {requests} · Images classified: {row.images}"
                f" · Per classified image: {per_image}{idle}"
            )
        )
    if summary.running_now:
        blocks.append(context("Still running: " + ", ".join(map(escape, summary.running_now))))
    return rendered(summary.text, blocks)
