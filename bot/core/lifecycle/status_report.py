"""What `/cxr status` says: the serving model, the project's versions, what is in progress, the
recent actions and, without Rekognition, the local model's card.

Kept apart from the operation notices because it is a report, not a message about one
operation: rows and lines the Block Kit renderer lays out its own way, and `describe` joins
into plain text. Built by `bot.core.lifecycle.status`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.core.lifecycle.notices import (
    Described,
    Who,
    label_metrics_phrase,
    percent,
    plain,
    units_phrase,
)
from bot.core.model_versions import LabelMetrics
from bot.core.pricing import duration, usd


@dataclass(frozen=True)
class VersionRow:
    name: str
    arn: str
    status: str
    status_message: str = ""
    created: datetime | None = None
    f1: float | None = None
    labels: tuple[LabelMetrics, ...] = ()
    min_units: int | None = None
    max_units: int | None = None
    running_seconds: float | None = None  # this run so far, when the bot has a record of it
    cost_so_far: float | None = None
    serving: bool = False
    operation: str | None = None  # "starting", "stopping", "training" (by the bot, now)
    operation_by: str = ""
    billable_training_seconds: int | None = None


@dataclass(frozen=True)
class OperationLine:
    kind: str
    version_name: str
    user: str
    started_at: datetime
    phase: str
    channel: str


@dataclass(frozen=True)
class AuditLine:
    at: datetime
    actor: str
    action: str
    target: str
    result: str


@dataclass
class StatusReport(Described):
    project: str | None = None
    rows: list[VersionRow] = field(default_factory=list)
    hidden_versions: int = 0
    operations: list[OperationLine] = field(default_factory=list)
    audit: list[AuditLine] = field(default_factory=list)
    serving: str = ""  # the model that answers, in words
    notes: list[str] = field(default_factory=list)
    local_card: dict[str, Any] | None = None  # the local model's card (local-only mode)
    now: datetime | None = None
    inference_unit_hour: float = 0.0

    def describe(self, who: Who = plain) -> str:
        lines = [f"Serving: {self.serving}"]
        if self.project:
            lines.append(f"Rekognition project {self.project}:")
            if not self.rows:
                lines.append("  no model versions yet; train one with /cxr train")
            for row in self.rows:
                lines.append("  " + version_line(row, who))
            if self.hidden_versions:
                lines.append(f"  … and {self.hidden_versions} older versions")
        if self.local_card is not None:
            lines.extend(card_lines(self.local_card))
        for op in self.operations:
            lines.append(
                f"In progress: {op.kind} {op.version_name} ({op.phase}), asked by {who(op.user)}"
            )
        lines.extend(self.notes)
        if self.audit:
            lines.append("Recent actions:")
            lines.extend(f"  {audit_line(a, who)}" for a in self.audit)
        return "\n".join(lines)


def version_line(row: VersionRow, who: Who = plain) -> str:
    parts = [f"{row.name}: {row.status}"]
    if row.serving:
        parts.append("serving")
    if row.f1 is not None:
        parts.append(f"F1 {row.f1:.3f}")
    if row.labels:
        parts.append(label_metrics_phrase(list(row.labels)))
    if row.created:
        parts.append(f"created {row.created:%Y-%m-%d}")
    if row.min_units is not None:
        parts.append(units_phrase(row.min_units, row.max_units))
    if row.running_seconds is not None and row.cost_so_far is not None:
        parts.append(
            f"running {duration(row.running_seconds)}, about {usd(row.cost_so_far)} so far"
        )
    if row.status_message and row.status in ("FAILED", "TRAINING_FAILED"):
        parts.append(row.status_message)
    if row.operation:
        parts.append(f"{row.operation}, asked by {who(row.operation_by)}")
    return ", ".join(parts)


def audit_line(entry: AuditLine, who: Who = plain) -> str:
    return f"{entry.at:%Y-%m-%d %H:%M} {who(entry.actor)} {entry.action} {entry.target}: {entry.result}"


def card_lines(card: dict[str, Any]) -> list[str]:
    """The local model card in a few lines (fields read defensively: the card may change)."""
    if not card:
        return ["Local model: no model card found."]
    name = f"{card.get('name', 'local model')} {card.get('version', '')}".strip()
    lines = [
        f"Local model {name}" + (f", created {card['created']}" if card.get("created") else "")
    ]
    metrics = card.get("metrics")
    splits = (
        ("validation", "Validation"),
        ("validation_atypical", "Harder validation (films atypical for their class)"),
    )
    for key, title in splits:
        validation = metrics.get(key) if isinstance(metrics, dict) else None
        if not isinstance(validation, dict):
            continue
        shown = [
            f"{name} {percent(validation[name])}"
            for name in ("accuracy", "sensitivity", "specificity", "f1", "auc")
            if isinstance(validation.get(name), int | float)
        ]
        n = validation.get("n")
        if shown:
            lines.append(f"  {title}: " + ", ".join(shown) + (f" (n = {n})" if n else ""))
    data = card.get("data")
    counts = data.get("counts") if isinstance(data, dict) else None
    if isinstance(counts, dict) and counts:
        lines.append("  Trained on " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    limitations = card.get("limitations")
    if isinstance(limitations, list):
        lines.extend(f"  Limitation: {item}" for item in limitations[:5] if isinstance(item, str))
    return lines
