"""What the model lifecycle says: replies to the person who asked, and posts in the channel.

Each notice carries facts, and `describe(who)` words them in one plain paragraph (`who` turns a
user ID into a name or a mention); `text` holds that paragraph for chats without Block Kit.
Costs are always estimates from the configured prices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.core.model_versions import LabelMetrics
from bot.core.ports import Notice
from bot.core.pricing import duration, usd
from bot.core.training_data import Problem

Who = Callable[[str], str]


def plain(ref: str) -> str:
    """`who` for plain text: IDs stay as they are (Slack's renderer turns them into mentions)."""
    return ref


def units_phrase(low: int, high: int | None) -> str:
    if high is None or high == low:
        return f"{low} inference unit{'s' * (low != 1)}"
    return f"{low}–{high} inference units (auto-scaling)"


def hourly_phrase(low: float, high: float) -> str:
    if abs(high - low) < 0.005:
        return f"{usd(low)}/hour (about {usd(low * 24)}/day)"
    return f"{usd(low)}–{usd(high)}/hour (about {usd(low * 24)}–{usd(high * 24)}/day)"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def label_metrics_phrase(labels: list[LabelMetrics]) -> str:
    return "; ".join(
        f"{m.label}: precision {percent(m.precision)}, recall {percent(m.recall)}" for m in labels
    )


class Described(Notice):
    def describe(self, who: Who = plain) -> str:  # pragma: no cover - every subclass overrides
        return self.text

    def __post_init__(self) -> None:
        if not self.text:
            self.text = self.describe(plain)


# --- replies to the person who asked (ephemeral) --------------------------------------------
@dataclass
class LifecycleReply(Described):
    """A short answer: done, refused, already happening, or an error worth reading."""

    tone: str = "info"  # info | ok | refused | busy | error

    def describe(self, who: Who = plain) -> str:
        return self.text


@dataclass
class Busy(Described):
    """Something is already happening to the version: say what, who asked, and where the
    outcome will be posted, instead of asking AWS again."""

    version_name: str = ""
    what: str = ""  # "already starting", "stopping", "already training"…
    by: str = ""  # who asked for what is happening
    asker: str = ""  # who is asking now ("you" when the same person)
    age_seconds: float = 0.0
    channel: str = ""  # where the outcome will be posted
    phase: str = ""
    note: str = ""

    def describe(self, who: Who = plain) -> str:
        by = "you" if self.by == self.asker else who(self.by)
        now = f", now {TRAIN_PHASES.get(self.phase, self.phase)}" if self.phase else ""
        text = (
            f"{self.version_name} is {self.what} (asked by {by} "
            f"{duration(self.age_seconds)} ago{now})."
        )
        if self.note:
            text += f" {self.note}"
        if self.channel:
            text += f" I'll post the outcome in {who(self.channel)}."
        return text


@dataclass
class TrainingRefused(Described):
    source: str = ""
    problems: list[Problem] = field(default_factory=list)

    def describe(self, who: Who = plain) -> str:
        lines = [f"I can't train from {self.source}:"]
        for problem in self.problems:
            lines.append(f"- {problem.title}")
            lines.extend(f"    {item}" for item in problem.lines())
        return "\n".join(lines)


@dataclass
class StartProposal(Described):
    version_name: str = ""
    version_arn: str = ""
    min_units: int = 1
    max_units: int | None = None
    hourly_low: float = 0.0
    hourly_high: float = 0.0
    f1: float | None = None
    status: str = ""
    others_running: list[str] = field(default_factory=list)

    def describe(self, who: Who = plain) -> str:
        text = (
            f"Start {self.version_name} with {units_phrase(self.min_units, self.max_units)}? "
            f"It costs an estimated {hourly_phrase(self.hourly_low, self.hourly_high)} for as "
            "long as it runs, used or not, until someone stops it."
        )
        if self.others_running:
            text += f" Already running (and billing): {', '.join(self.others_running)}."
        return text

    @property
    def button_value(self) -> dict[str, Any]:
        return {
            "arn": self.version_arn,
            "name": self.version_name,
            "min": self.min_units,
            "max": self.max_units,
        }


@dataclass
class StartRequested(Described):
    version_name: str = ""
    min_units: int = 1
    max_units: int | None = None
    hourly_low: float = 0.0
    hourly_high: float = 0.0
    by: str = ""

    def describe(self, who: Who = plain) -> str:
        return (
            f"{who(self.by)} confirmed: starting {self.version_name} with "
            f"{units_phrase(self.min_units, self.max_units)}, an estimated "
            f"{hourly_phrase(self.hourly_low, self.hourly_high)}. Starting takes a few minutes; "
            "I'll post in this channel when it's running."
        )


@dataclass
class StartCancelled(Described):
    version_name: str = ""
    by: str = ""

    def describe(self, who: Who = plain) -> str:
        return f"{who(self.by)} cancelled: {self.version_name} was not started."


@dataclass
class StopRequested(Described):
    version_name: str = ""
    ran_seconds: float | None = None
    cost: float | None = None
    by: str = ""

    def describe(self, who: Who = plain) -> str:
        text = f"Stopping {self.version_name}"
        if self.ran_seconds is not None and self.cost is not None:
            text += f" (running for {duration(self.ran_seconds)}, about {usd(self.cost)} so far)"
        return text + ". I'll post in this channel when it has stopped."


# --- posts in the channel (the outcome of an operation) -------------------------------------
@dataclass
class ModelRunning(Described):
    version_name: str = ""
    min_units: int = 1
    max_units: int | None = None
    hourly_low: float = 0.0
    hourly_high: float = 0.0
    took_seconds: float = 0.0
    by: str = ""
    serving: bool = True

    def describe(self, who: Who = plain) -> str:
        text = (
            f"{self.version_name} is running with "
            f"{units_phrase(self.min_units, self.max_units)} (started by {who(self.by)}, took "
            f"{duration(self.took_seconds)}). It costs an estimated "
            f"{hourly_phrase(self.hourly_low, self.hourly_high)} until it is stopped with "
            f"`/cxr stop {self.version_name}`."
        )
        if self.serving:
            text += " X-rays posted from now on are screened by it."
        return text


@dataclass
class ModelStartFailed(Described):
    version_name: str = ""
    reason: str = ""
    by: str = ""

    def describe(self, who: Who = plain) -> str:
        reason = self.reason or "Rekognition gave no reason"
        return f"{self.version_name} failed to start (asked by {who(self.by)}): {reason}"


@dataclass
class ModelStopped(Described):
    version_name: str = ""
    ran_seconds: float | None = None
    cost: float | None = None
    by: str = ""

    def describe(self, who: Who = plain) -> str:
        text = f"{self.version_name} has stopped (asked by {who(self.by)})."
        if self.ran_seconds is not None and self.cost is not None:
            text += f" It ran for {duration(self.ran_seconds)}, an estimated {usd(self.cost)}."
        else:
            text += " I have no record of when it started, so no cost for this run."
        return text


@dataclass
class ModelStopFailed(Described):
    version_name: str = ""
    reason: str = ""
    by: str = ""

    def describe(self, who: Who = plain) -> str:
        return f"{self.version_name} did not stop (asked by {who(self.by)}): {self.reason}"


TRAIN_PHASES = {
    "validating": "checking the images",
    "datasets": "creating the project's datasets from the manifest",
    "creating": "importing the images into the datasets",
    "splitting": "moving 20% of the images to the test dataset",
    "training": "training",
}


@dataclass
class TrainingProgress(Described):
    """The message a training posts when it starts, updated in place as it moves along."""

    version_name: str = ""
    source: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    phase: str = "datasets"
    by: str = ""
    detail: str = ""
    replacing: bool = False
    done: bool = False

    def describe(self, who: Who = plain) -> str:
        images = ", ".join(f"{n:,} {label}" for label, n in self.counts.items())
        text = f"Training {self.version_name} from {self.source} ({images} images), asked by {who(self.by)}."
        if self.done:
            return text + " Finished: see below."
        now = TRAIN_PHASES.get(self.phase, self.phase)
        text += f" Now: {now}."
        if self.detail:
            text += f" {self.detail}"
        if self.replacing and self.phase == "datasets":
            text += " The project's current datasets are replaced (trained versions keep theirs)."
        return text + " Training usually takes 30 minutes to a few hours; I'll post when it ends."


@dataclass
class TrainingCompleted(Described):
    version_name: str = ""
    f1: float | None = None
    labels: list[LabelMetrics] = field(default_factory=list)
    billable_seconds: int | None = None
    cost: float | None = None
    wall_seconds: float = 0.0
    train_images: int | None = None
    test_images: int | None = None
    by: str = ""

    def describe(self, who: Who = plain) -> str:
        f1 = "unknown" if self.f1 is None else f"{self.f1:.3f}"
        text = f"Training {self.version_name} finished (asked by {who(self.by)}): F1 {f1}."
        if self.labels:
            text += f" {label_metrics_phrase(self.labels)}."
        if self.test_images:
            text += (
                f" Tested on {self.test_images:,} images, trained on {self.train_images or 0:,}."
            )
        if self.billable_seconds is not None and self.cost is not None:
            text += (
                f" Billable training time {duration(self.billable_seconds)}, an estimated "
                f"{usd(self.cost)}."
            )
        return text + f" Start it with `/cxr start {self.version_name}`."


@dataclass
class TrainingFailed(Described):
    version_name: str = ""
    reason: str = ""
    by: str = ""

    def describe(self, who: Who = plain) -> str:
        return f"Training {self.version_name} failed (asked by {who(self.by)}): {self.reason}"


# --- /cxr status ----------------------------------------------------------------------------
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
    validation = metrics.get("validation") if isinstance(metrics, dict) else None
    if isinstance(validation, dict):
        shown = [
            f"{key} {percent(validation[key])}"
            for key in ("accuracy", "sensitivity", "specificity", "f1", "auc")
            if isinstance(validation.get(key), int | float)
        ]
        n = validation.get("n")
        if shown:
            lines.append("  Validation: " + ", ".join(shown) + (f" (n = {n})" if n else ""))
    data = card.get("data")
    counts = data.get("counts") if isinstance(data, dict) else None
    if isinstance(counts, dict) and counts:
        lines.append("  Trained on " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    limitations = card.get("limitations")
    if isinstance(limitations, list):
        lines.extend(f"  Limitation: {item}" for item in limitations[:4] if isinstance(item, str))
    return lines
