"""The verdict reply: one section per image, the model that answered, and the disclaimer."""

from __future__ import annotations

from bot.core.intake import FileOutcome, UploadReply
from bot.core.labels import Label, Verdict
from bot.core.phi import phi_notice
from bot.slack.blocks import Rendered, context, escape, render, section

DISCLAIMER = "Screening aid only, not a diagnosis."

LABEL_EMOJI = {Label.NORMAL: ":white_check_mark:", Label.PNEUMONIA: ":large_orange_circle:"}


def percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def verdict_phrase(verdict: Verdict) -> str:
    """ "Pneumonia, 97.1%" or "Uncertain (Normal 55.0%, Pneumonia 45.0%)"."""
    if verdict.label is None:
        both = ", ".join(f"{label.value} {percent(verdict.scores[label])}" for label in Label)
        return f"Uncertain ({both})"
    return f"{verdict.label.value}, {percent(verdict.confidence)}"


def outcome_line(outcome: FileOutcome) -> str:
    """The plain-text line for one file, used in the fallback text and by the shell."""
    name = outcome.ref.name
    if outcome.verdict is not None:
        line = f"{name}: {verdict_phrase(outcome.verdict)} ({outcome.verdict.model.describe()})."
        line = f"{line} {outcome.verdict.note}" if outcome.verdict.note else line
        return f"{line} {phi_notice(list(outcome.phi))}" if outcome.phi else line
    reply = outcome.error.reply if outcome.error else "I couldn't process this file."
    line = f"{name}: {reply}"
    return f"{line} {phi_notice(list(outcome.phi))}" if outcome.phi else line


def _outcome_blocks(outcome: FileOutcome) -> list[dict]:
    blocks = _verdict_blocks(outcome)
    if outcome.phi:  # which kinds of field (fixed words, never the file's values)
        blocks.append(context(f":warning: {escape(phi_notice(list(outcome.phi)))}"))
    return blocks


def _verdict_blocks(outcome: FileOutcome) -> list[dict]:
    name = f"*{escape(outcome.ref.name)}*"
    verdict = outcome.verdict
    if verdict is None:
        reply = outcome.error.reply if outcome.error else "I couldn't process this file."
        return [section(f":warning: {name}\n{reply}")]
    if verdict.label is None:
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
    text = "\n".join(outcome_line(o) for o in reply.outcomes)
    if any(o.verdict is not None for o in reply.outcomes):
        blocks.append(context(f"_{DISCLAIMER}_"))
        text += f"\n{DISCLAIMER}"
    return Rendered(text=text, blocks=blocks[:50])
