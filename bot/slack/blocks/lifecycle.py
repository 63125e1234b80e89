"""Block Kit for the model lifecycle: status, the start confirmation, outcomes of operations.

The fallback `text` is the notice's own sentence with Slack mentions (`ref`), so a notification
or a screen reader carries the same facts as the blocks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import partial
from typing import Any

from bot.core.lifecycle.notices import (
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
from bot.core.lifecycle.status_report import (
    StatusReport,
    VersionRow,
    audit_line,
    card_lines,
    version_line,
)
from bot.slack.blocks import Rendered, actions, button, context, escape, render, section, user_text

START_BLOCK = "lifecycle_start"
CONFIRM_START = "lifecycle.start.confirm"
CANCEL_START = "lifecycle.start.cancel"

TONE_EMOJI = {
    "ok": ":white_check_mark:",
    "info": ":information_source:",
    "refused": ":information_source:",
    "busy": ":hourglass_flowing_sand:",
    "error": ":warning:",
}
MAX_BLOCKS = 50

_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_CHANNEL = re.compile(r"^[CG][A-Z0-9]{2,}$")


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


def _simple(emoji: str, notice: Described) -> Rendered:
    """One section: the emoji, then the notice's own sentence."""
    text = slack_text(notice.describe)
    return Rendered(text=text, blocks=[section(f"{emoji} {text}")])


# The notices that need nothing but their sentence, and the emoji that leads it.
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
    return Rendered(text=slack_text(notice.describe), blocks=blocks)


@render.register
def _(notice: StartProposal) -> Rendered:
    text = slack_text(notice.describe)
    facts = [f"Version: *{escape(notice.version_name)}* ({notice.status})"]
    if notice.f1 is not None:
        facts.append(f"F1 {notice.f1:.3f}")
    blocks = [
        section(f":moneybag: {text}"),
        context(" · ".join(facts) + " · prices are estimates from the configured rates"),
        actions(
            START_BLOCK,
            button("Start it", CONFIRM_START, json.dumps(notice.button_value), style="primary"),
            button("Cancel", CANCEL_START, json.dumps(notice.button_value)),
        ),
    ]
    return Rendered(text=text, blocks=blocks)


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
    return Rendered(text=text, blocks=blocks)


@render.register
def _(report: StatusReport) -> Rendered:
    blocks: list[dict[str, Any]] = [
        section(f":robot_face: *Serving:* {escape(report.serving)}"),
    ]
    if report.project:
        if report.rows:
            lines = [_row_line(row) for row in report.rows]
            if report.hidden_versions:
                lines.append(f"… and {report.hidden_versions} older versions")
            blocks.append(
                section(f"*Rekognition project {escape(report.project)}*\n" + "\n".join(lines))
            )
        else:
            blocks.append(
                section(
                    f"*Rekognition project {escape(report.project)}*: no model versions yet. "
                    "Train one with `/cxr train s3://bucket/prefix`."
                )
            )
    if report.local_card is not None:
        lines = card_lines(report.local_card)
        blocks.append(section("\n".join(escape(line) for line in lines)))
    if report.operations:
        lines = [
            f":hourglass_flowing_sand: {op.kind} *{escape(op.version_name)}* ({op.phase}), "
            f"asked by {ref(op.user)} {op.started_at:%Y-%m-%d %H:%M} UTC"
            for op in report.operations
        ]
        blocks.append(section("*In progress*\n" + "\n".join(lines)))
    for note in report.notes:
        blocks.append(context(escape(note)))
    if report.audit:
        blocks.append(
            context(
                "*Recent actions*\n"
                + "\n".join(slack_text(partial(audit_line, a)) for a in report.audit)
            )
        )
    return Rendered(text=slack_text(report.describe), blocks=blocks[:MAX_BLOCKS])


def _row_line(row: VersionRow) -> str:
    line = slack_text(lambda who: version_line(row, who))
    return f":arrow_forward: *{line}*" if row.serving else line
