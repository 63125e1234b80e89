"""The verdict reply: one section per image, the model that answered, and the disclaimer."""

from __future__ import annotations

from bot.core.intake import FileOutcome, UploadReply
from bot.core.labels import DISAGREE, Label, Verdict
from bot.slack.blocks import Rendered, context, escape, render, section
from bot.slack.blocks.review import review_buttons

DISCLAIMER = "Screening aid only, not a diagnosis."

LABEL_EMOJI = {Label.NORMAL: ":white_check_mark:", Label.PNEUMONIA: ":large_orange_circle:"}


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
    """The plain-text line for one file, used in the fallback text and by the shell."""
    name = outcome.ref.name
    if outcome.verdict is not None:
        line = f"{name}: {verdict_phrase(outcome.verdict)} ({outcome.verdict.model.describe()})."
        return f"{line} {outcome.verdict.note}" if outcome.verdict.note else line
    reply = outcome.error.reply if outcome.error else "I couldn't process this file."
    return f"{name}: {reply}"


def _outcome_blocks(outcome: FileOutcome) -> list[dict]:
    name = f"*{escape(outcome.ref.name)}*"
    verdict = outcome.verdict
    if verdict is None:
        reply = outcome.error.reply if outcome.error else "I couldn't process this file."
        return [section(f":warning: {name}\n{reply}")]
    if verdict.disagree:
        blocks = [section(f":grey_question: {name}: *{DISAGREE}*\n{both_answers(verdict)}")]
    elif verdict.label is None:
        head = f":grey_question: {name}: *Uncertain*"
        body = "  ".join(f"{label.value} {percent(verdict.scores[label])}" for label in Label)
        blocks = [section(f"{head}\n{body}")]
    else:
        emoji = LABEL_EMOJI[verdict.label]
        blocks = [
            section(f"{emoji} {name}: *{verdict.label.value}*, {percent(verdict.confidence)}")
        ]
    facts = [f"Model: {verdict.model.describe()}"]
    if verdict.note:
        facts.append(verdict.note)
    blocks.append(context(*facts))
    return blocks


@render.register
def _(reply: UploadReply) -> Rendered:
    blocks: list[dict] = []
    for outcome in reply.outcomes:
        blocks.extend(_outcome_blocks(outcome))
        if reply.reviewable and outcome.verdict is not None:
            blocks.append(review_buttons(reply.message_ts, outcome.ref.file_id))
    text = "\n".join(outcome_line(o) for o in reply.outcomes)
    if any(o.verdict is not None for o in reply.outcomes):
        blocks.append(context(f"_{DISCLAIMER}_"))
        text += f"\n{DISCLAIMER}"
    return Rendered(text=text, blocks=blocks[:50])
