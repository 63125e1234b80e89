"""The verdict reply: a section per image, the model that answered, and the disclaimer.

A message may carry more files than one Slack message can answer (50 blocks, 3,000 characters a
section), so the reply is a list of parts, each a whole message with its own disclaimer, in the
files' order. File names go through `bot.slack.escaping.user_text`; blocks are built with
slack_sdk's Block Kit models, which raise on a limit violation (a bug in this module, caught by
the tests), never quietly cut a verdict off.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.core.intake import FileOutcome, UploadReply
from bot.core.labels import DISAGREE, Label, Verdict
from bot.core.phi import phi_notice
from bot.core.review.records import ReviewLabel
from bot.slack.blocks import Rendered, render, render_parts
from bot.slack.blocks.review import BLOCK_PREFIX, action_id, button_value
from bot.slack.escaping import user_text

log = logging.getLogger(__name__)

DISCLAIMER = "Screening aid only, not a diagnosis."

LABEL_EMOJI = {Label.NORMAL: ":white_check_mark:", Label.PNEUMONIA: ":large_orange_circle:"}

MAX_BLOCKS = 50  # Block Kit's limit per message
MAX_TEXT = 3000  # a part's fallback text: well inside what notifications show
FALLBACK_FAILURE = "I couldn't process this file."


def percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def both_answers(verdict: Verdict) -> str:
    """ "Rekognition cxr v2: Pneumonia 95.0%; local cxr-cnn v1: Normal 90.0%"."""
    return "; ".join(
        f"{v.model.describe()}: {v.top.value} {percent(v.scores[v.top])}" for v in verdict.answers()
    )


def verdict_phrase(verdict: Verdict) -> str:
    """ "Pneumonia, 97.1%" or "Uncertain (Normal 55.0%, Pneumonia 45.0%)"."""
    if verdict.disagree:
        return f"{DISAGREE} ({both_answers(verdict)})"
    if verdict.label is None:
        both = ", ".join(f"{label.value} {percent(verdict.scores[label])}" for label in Label)
        return f"Uncertain ({both})"
    return f"{verdict.label.value}, {percent(verdict.confidence)}"


def outcome_line(outcome: FileOutcome) -> str:
    """The fallback-text line for one file: escaped name, then the verdict or the reason."""
    name = user_text(outcome.ref.name)
    if outcome.verdict is not None:
        line = f"{name}: {verdict_phrase(outcome.verdict)} ({outcome.verdict.model.describe()})."
        line = f"{line} {outcome.verdict.note}" if outcome.verdict.note else line
    else:
        line = f"{name}: {outcome.error.reply if outcome.error else FALLBACK_FAILURE}"
    return f"{line} {phi_notice(list(outcome.phi))}" if outcome.phi else line


def outcome_blocks(outcome: FileOutcome, review_ts: str | None = None) -> list[Block]:
    """One file's blocks; with `review_ts` (the posted message's ts) a verdict gets the review
    buttons under it."""
    blocks = _verdict_blocks(outcome, review_ts)
    if outcome.phi:  # which kinds of field (fixed words, never the file's values)
        blocks.append(_context(f":warning: {phi_notice(list(outcome.phi))}"))
    return blocks


def _verdict_blocks(outcome: FileOutcome, review_ts: str | None) -> list[Block]:
    name = f"*{user_text(outcome.ref.name)}*"
    verdict = outcome.verdict
    if verdict is None:
        reply = outcome.error.reply if outcome.error else FALLBACK_FAILURE
        return [_section(f":warning: {name}\n{reply}")]
    if verdict.disagree:
        blocks: list[Block] = [
            _section(f":grey_question: {name}: *{DISAGREE}*\n{both_answers(verdict)}")
        ]
    elif verdict.label is None:
        head = f":grey_question: {name}: *Uncertain*"
        body = "  ".join(f"{label.value} {percent(verdict.scores[label])}" for label in Label)
        blocks = [_section(f"{head}\n{body}")]
    else:
        emoji = LABEL_EMOJI[verdict.label]
        blocks = [
            _section(f"{emoji} {name}: *{verdict.label.value}*, {percent(verdict.confidence)}")
        ]
    facts = [f"Model: {verdict.model.describe()}"]
    if verdict.note:
        facts.append(verdict.note)
    blocks.append(_context(*facts))
    if review_ts is not None:
        blocks.append(_review_buttons(review_ts, outcome.ref.file_id))
    return blocks


def _review_buttons(message_ts: str, file_id: str) -> ActionsBlock:
    """Normal / Pneumonia / Not assessable (`commands.buttons`)."""
    value = button_value(message_ts, file_id)
    return ActionsBlock(
        block_id=BLOCK_PREFIX + file_id,
        elements=[
            ButtonElement(text=label.value, action_id=action_id(label), value=value)
            for label in ReviewLabel
        ],
    )


def reply_parts(outcomes: Sequence[FileOutcome], review_ts: str | None = None) -> list[Rendered]:
    """The reply to one message as few messages as Block Kit allows, every file in order.

    Each part is a whole message: its files' blocks and lines, then the disclaimer (when the
    reply holds any verdict) and, when there are several parts, "part i of n". Should a block
    ever break Block Kit's rules (a bug: the tests check every limit), the reply still goes
    out, as text, and the log says so.
    """
    try:
        return _block_parts(outcomes, review_ts)
    except (SlackObjectFormationError, ValueError) as exc:
        log.error("reply.blocks_invalid", extra={"error": type(exc).__name__})
        return _text_parts(outcomes)


def _text_parts(outcomes: Sequence[FileOutcome]) -> list[Rendered]:
    groups: list[list[str]] = [[]]
    for line in (outcome_line(o) for o in outcomes):
        if groups[-1] and sum(len(x) + 1 for x in groups[-1]) + len(line) > MAX_TEXT - 200:
            groups.append([])
        groups[-1].append(line)
    disclaimer = any(o.verdict is not None for o in outcomes)
    parts = []
    for number, lines in enumerate(groups, start=1):
        notes = ([DISCLAIMER] if disclaimer else []) + (
            [f"Part {number} of {len(groups)}."] if len(groups) > 1 else []
        )
        parts.append(Rendered(text="\n".join(lines + ([" ".join(notes)] if notes else []))))
    return parts


def _block_parts(outcomes: Sequence[FileOutcome], review_ts: str | None) -> list[Rendered]:
    groups: list[list[FileOutcome]] = [[]]
    blocks = text = 0
    for outcome in outcomes:
        size = len(outcome_blocks(outcome, review_ts))
        if review_ts is not None and outcome.verdict is not None:
            size += 1  # room for the "Reviewed by" line a review adds in place
        length = len(outcome_line(outcome)) + 1
        if groups[-1] and (blocks + size > MAX_BLOCKS - 1 or text + length > MAX_TEXT - 200):
            groups.append([])
            blocks = text = 0
        groups[-1].append(outcome)
        blocks += size
        text += length
    with_disclaimer = any(o.verdict is not None for o in outcomes)
    return [
        _part(group, i, len(groups), with_disclaimer, review_ts)
        for i, group in enumerate(groups, start=1)
    ]


def _part(
    group: list[FileOutcome],
    number: int,
    total: int,
    disclaimer: bool,
    review_ts: str | None = None,
) -> Rendered:
    blocks = [block for outcome in group for block in outcome_blocks(outcome, review_ts)]
    lines = [outcome_line(outcome) for outcome in group]
    notes = [DISCLAIMER] if disclaimer else []
    if total > 1:
        notes.append(f"Part {number} of {total}.")
    if notes:
        blocks.append(_context(*(f"_{n}_" if n == DISCLAIMER else n for n in notes)))
        lines.append(" ".join(notes))
    return Rendered(text="\n".join(lines), blocks=[block.to_dict() for block in blocks])


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text))


def _context(*texts: str) -> ContextBlock:
    for text in texts:
        if len(text) > MAX_TEXT:  # ContextBlock does not check its elements' length itself
            raise ValueError("context text over 3,000 characters")
    return ContextBlock(elements=[MarkdownTextObject(text=text) for text in texts])


def _review_ts(reply: UploadReply) -> str | None:
    return reply.message_ts if reply.reviewable and reply.message_ts else None


@render_parts.register
def _(reply: UploadReply) -> list[Rendered]:
    return reply_parts(reply.outcomes, _review_ts(reply))


@render.register
def _(reply: UploadReply) -> Rendered:
    """The first part: for callers that post one message (the whole reply is `render_parts`)."""
    return reply_parts(reply.outcomes, _review_ts(reply))[0]
