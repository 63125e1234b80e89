"""Block Kit for the learning loop: review buttons under a verdict, the "Reviewed by" line that
replaces them in place, and the `/cxr review` figures with their "Post chart" button."""

from __future__ import annotations

import json
import re
from typing import Any

from bot.core.learning.export import ExportResult
from bot.core.learning.reviewing import Reviewed, ReviewReport, StatusWithFigures
from bot.core.review.figures import VersionFigures
from bot.core.review.records import CaseKey, ReviewLabel
from bot.slack.blocks import Rendered, actions, button, context, escape, render, section

REVIEW_PREFIX = "review_"
REVIEW_ACTION = re.compile("^" + REVIEW_PREFIX + "(normal|pneumonia|not_assessable)$")
POST_CHART = "review_post_chart"
BLOCK_PREFIX = "review:"
REVIEWED_PREFIX = "reviewed:"


def action_id(label: ReviewLabel) -> str:
    return REVIEW_PREFIX + label.name.lower()


def label_of(action: str) -> ReviewLabel | None:
    match = REVIEW_ACTION.match(action)
    return ReviewLabel[match.group(1).upper()] if match else None


def button_value(message_ts: str, file_id: str) -> str:
    """What a review button carries: the posted message and the file (Slack IDs only)."""
    return json.dumps({"ts": message_ts, "f": file_id})


def case_of(channel: str, value: str) -> CaseKey | None:
    try:
        data = json.loads(value)
        return CaseKey(channel, str(data["ts"]), str(data["f"]))
    except (KeyError, TypeError, ValueError):
        return None


def reviewed_line(reviewed: Reviewed) -> str:
    review = reviewed.review
    line = f":memo: Reviewed by <@{review.reviewer}>: *{review.label.value}*"
    if reviewed.corrected and reviewed.previous is not None:
        line += f" (corrects {reviewed.previous.label.value} by <@{reviewed.previous.reviewer}>)"
    return line


def with_review(blocks: list[dict[str, Any]], file_id: str, reviewed: Reviewed) -> list[dict]:
    """The message's blocks with the review line for `file_id` set (added, or replaced), just
    under that image's buttons, which stay so a later correction is one press away."""
    line = context(reviewed_line(reviewed))
    line["block_id"] = REVIEWED_PREFIX + file_id
    kept = [b for b in blocks if b.get("block_id") != REVIEWED_PREFIX + file_id]
    for i, block in enumerate(kept):
        if block.get("block_id") == BLOCK_PREFIX + file_id:
            return [*kept[: i + 1], line, *kept[i + 1 :]]
    return [*kept, line]


# --- /cxr review ---------------------------------------------------------------------------
def figure_lines(figures: VersionFigures) -> list[str]:
    f = figures
    lines = [
        f"*{f.model.describe()}*: {f.reviewed} of {f.answered} verdicts reviewed"
        + (f", {f.not_assessable} not assessable (left out)" if f.not_assessable else "")
        + (f", {f.uncertain} shown as Uncertain" if f.uncertain else ""),
        f"Agreement: {f.agreement.describe()}",
        f"Sensitivity (Pneumonia): {f.sensitivity.describe()}",
        f"Specificity (Normal): {f.specificity.describe()}",
    ]
    c = f.confusion
    lines.append(f"TP {c.tp} · FN {c.fn} · FP {c.fp} · TN {c.tn}")
    return lines


def report_text(report: ReviewReport) -> str:
    window = f"the last {report.days} days" if report.days else "all time"
    head = f"Reviewed verdicts, {window} (95% Wilson intervals; reviewers' labels as truth)"
    if not report.figures:
        return f"{head}\nNo reviewed verdicts yet."
    body = "\n\n".join("\n".join(figure_lines(f)) for f in report.figures)
    note = (
        f"\n{report.left_out} answers on images later exported for training are left out."
        if report.left_out
        else ""
    )
    return f"{head}\n\n{body}{note}"


@render.register
def _(report: ReviewReport) -> Rendered:
    window = f"the last {report.days} days" if report.days else "all time"
    blocks: list[dict[str, Any]] = [
        section(f":bar_chart: *Reviewed verdicts, {window}*"),
    ]
    if not report.figures:
        blocks.append(section("No reviewed verdicts yet."))
    for figures in report.figures:
        blocks.append(section("\n".join(figure_lines(figures))))
    notes = [
        "95% Wilson intervals; the reviewers' labels are the truth; Pneumonia is positive. "
        "Only reviewed verdicts count: if some kinds get reviewed more (say the positives), "
        "these figures lean that way."
    ]
    if report.left_out:
        notes.append(
            f"{report.left_out} answers on images later exported for training are left out."
        )
    blocks.append(context(*notes))
    if any(f.reviewed for f in report.figures):
        blocks.append(
            actions(
                "review_chart",
                button("Post chart", POST_CHART, json.dumps({"days": report.days})),
            )
        )
    return Rendered(text=report_text(report), blocks=blocks)


# --- /cxr status ---------------------------------------------------------------------------
def served_line(status: StatusWithFigures) -> str:
    """Both versions when the stored served one and `CXR_PROJECT_VERSION_ARN` differ, and a
    promotion under way."""
    parts = []
    served, configured = status.served, status.configured_arn
    if served is not None and served.version_arn != configured:
        by = (
            f"promoted by <@{served.by}>"
            if served.by.startswith(("U", "W"))
            else f"set by {served.by}"
        )
        line = (
            f":arrows_counterclockwise: Serving *{version_name(served.version_arn)}* (since "
            f"{served.since:%Y-%m-%d %H:%M} UTC, {by})"
        )
        if configured:
            line += (
                f"; `CXR_PROJECT_VERSION_ARN` names *{version_name(configured)}*, which was only "
                "the initial value"
            )
        parts.append(line + ".")
    flight = status.promotion
    if flight is not None:
        parts.append(
            f":hourglass_flowing_sand: Promoting *{version_name(flight.candidate_arn)}* (asked by "
            f"<@{flight.user}> at {flight.started_at:%Y-%m-%d %H:%M} UTC): it serves once it "
            "is RUNNING."
        )
    return " ".join(parts)


def version_name(arn: str) -> str:
    """…/version/<name>/<timestamp> → <name>."""
    parts = arn.split("/")
    return parts[-2] if "/version/" in arn and len(parts) >= 2 else arn


@render.register
def _(status: StatusWithFigures) -> Rendered:
    first = render(status.status)
    figures = render(status.report)
    blocks = [*first.blocks]
    texts = [first.text]
    served = served_line(status)
    if served:
        blocks.append(section(served))
        texts.append(served)
    blocks += [{"type": "divider"}, *[b for b in figures.blocks if b.get("type") != "actions"]]
    texts.append(figures.text)
    blocks.append(context("`/cxr review [days]` for another window and a chart."))
    return Rendered(text="\n\n".join(texts), blocks=blocks[:50])


@render.register
def _(result: ExportResult) -> Rendered:
    """`/cxr export`: the S3 prefix and AWS's error text are the user's and AWS's words, escaped
    so that neither can mention, link or format."""
    text = escape(result.text)
    return Rendered(text=text, blocks=[section(f":package: {text}")])
