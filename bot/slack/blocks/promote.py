"""Block Kit for `/cxr promote`: the candidate beside the served version, the buttons (one
confirmation, or two for a worse candidate), and what happened."""

from __future__ import annotations

import json
from typing import Any

from bot.core.learning.promote import PromoteProposal, PromoteReply
from bot.core.review.promotion import Comparison, Evaluated, Measure
from bot.slack import fleet  # AWS failures are worded there (imported whole: a cycle)
from bot.slack.blocks import Rendered, actions, button, context, escape, render, section

CONFIRM = "promote_confirm"
CANCEL = "promote_cancel"
STOP_OLD = "promote_stop_old"


def _figure(e: Evaluated, measure: Measure) -> str:
    if measure is Measure.AGREEMENT and e.agreement is not None:
        return f"*{e.name}*: agreement {e.agreement.describe()}"
    if e.value is None:
        return f"*{e.name}*: no F1 on record"
    labels = "; ".join(
        f"{m.label}: precision {_pct(m.precision)}, recall {_pct(m.recall)}" for m in e.labels
    )
    return f"*{e.name}*: F1 {e.value:.3f}" + (f" ({labels})" if labels else "")


def comparison_lines(c: Comparison) -> list[str]:
    lines = [
        f"Measure: {c.basis}"
        + (f" (reviewed cases not used: {c.why_fallback})" if c.why_fallback else ""),
        "Candidate " + _figure(c.candidate, c.measure),
        "Served " + _figure(c.served, c.measure),
    ]
    if c.paired is not None:
        lines.append(
            f"Where they differ: only the candidate right on {c.paired.b}, only the served "
            f"version right on {c.paired.c} (exact McNemar p = {c.paired.p_value:.2f})."
        )
    if not c.comparable:
        lines.append("The two can't be compared on this measure.")
    elif c.worse:
        lines.append(":warning: The candidate is *worse* by this measure.")
    else:
        lines.append("The candidate is at least as good by this measure.")
    return lines


@render.register
def _(p: PromoteProposal) -> Rendered:
    c = p.comparison
    lines = comparison_lines(c) if c is not None else [p.summary]
    value = json.dumps(
        {
            "arn": p.candidate_arn,
            "name": p.candidate,
            "served": p.served[:80],
            "step": p.step,
            "units": p.units,
            "worse": p.worse,
            "why": p.summary[:400],
        }
    )
    head = f":arrows_counterclockwise: *Promote {p.candidate}* in place of *{p.served}*?"
    if p.step >= 2:
        head = (
            f":warning: *{p.candidate}* is worse than *{p.served}* by this measure. "
            "Press once more to promote it anyway."
        )
        label = f"Yes, promote the worse {p.candidate}"
    elif p.worse:
        label = "Promote anyway…"
    else:
        label = f"Promote {p.candidate}"
    how = (
        "It runs already: serving switches at once."
        if p.running
        else f"It isn't running: I start it ({p.units} unit{'s' if p.units != 1 else ''}) "
        "and switch once it is RUNNING; both bill while they overlap."
    )
    cancel = json.dumps({"name": p.candidate})
    blocks = [
        section(head),
        section("\n".join(lines)),
        context(how),
        actions(
            "promote",
            button(label, CONFIRM, value, style="danger" if p.worse else "primary"),
            button("Cancel", CANCEL, cancel),
        ),
    ]
    return Rendered(text="\n".join([head, *lines, how]), blocks=blocks)


@render.register
def _(r: PromoteReply) -> Rendered:
    """The text may quote AWS's own error message: escaped, so it can't mention or link."""
    text = escape(r.text + (f": {fleet.aws_words(r.failure)}" if r.failure else ""))
    blocks: list[dict[str, Any]] = [section(text)]
    if r.kind == "switched" and r.previous_arn:
        value = json.dumps({"arn": r.previous_arn, "name": r.previous})
        blocks.append(actions("promote_after", button(f"Stop {r.previous}", STOP_OLD, value)))
    return Rendered(text=text, blocks=blocks)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"
