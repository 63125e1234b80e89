"""What the model lifecycle says: replies to the person who asked, and posts in the channel.

Each notice carries facts, and `describe(who)` words them in one plain paragraph (`who` turns a
user ID into a name or a mention); `text` holds that paragraph for chats without Block Kit.
Costs are always estimates from the configured prices. Notices that carry the same facts share
a base class (`UnitsNotice`, `RunNotice`, `OperationFailed`); each class still gets its own
renderer (`bot.slack.fleet`). What `/cxr status` says is in
`bot.core.fleet.status`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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
class UnitsNotice(Described):
    """A version with the inference units it runs (or would run) with, and what they cost."""

    version_name: str = ""
    min_units: int = 1
    max_units: int | None = None
    hourly_low: float = 0.0  # estimated cost an hour at min_units
    hourly_high: float = 0.0  # … and at max_units

    @property
    def units(self) -> str:
        return units_phrase(self.min_units, self.max_units)

    @property
    def hourly(self) -> str:
        return hourly_phrase(self.hourly_low, self.hourly_high)


@dataclass
class StartProposal(UnitsNotice):
    version_arn: str = ""
    f1: float | None = None
    status: str = ""
    others_running: list[str] = field(default_factory=list)

    def describe(self, who: Who = plain) -> str:
        text = (
            f"Start {self.version_name} with {self.units}? It costs an estimated {self.hourly} "
            "for as long as it runs, used or not, until someone stops it."
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
class StartRequested(UnitsNotice):
    by: str = ""

    def describe(self, who: Who = plain) -> str:
        return (
            f"{who(self.by)} confirmed: starting {self.version_name} with {self.units}, an "
            f"estimated {self.hourly}. Starting takes a few minutes; I'll post in this channel "
            "when it's running."
        )


@dataclass
class StartCancelled(Described):
    version_name: str = ""
    by: str = ""

    def describe(self, who: Who = plain) -> str:
        return f"{who(self.by)} cancelled: {self.version_name} was not started."


@dataclass
class RunNotice(Described):
    """A version's run being stopped: how long it ran and what it cost, when the bot knows."""

    version_name: str = ""
    ran_seconds: float | None = None
    cost: float | None = None
    by: str = ""


@dataclass
class StopRequested(RunNotice):
    def describe(self, who: Who = plain) -> str:
        text = f"Stopping {self.version_name}"
        if self.ran_seconds is not None and self.cost is not None:
            text += f" (running for {duration(self.ran_seconds)}, about {usd(self.cost)} so far)"
        return text + ". I'll post in this channel when it has stopped."


# --- posts in the channel (the outcome of an operation) -------------------------------------
@dataclass
class ModelRunning(UnitsNotice):
    took_seconds: float = 0.0
    by: str = ""
    serving: bool = True

    def describe(self, who: Who = plain) -> str:
        text = (
            f"{self.version_name} is running with {self.units} (started by {who(self.by)}, took "
            f"{duration(self.took_seconds)}). It costs an estimated {self.hourly} until it is "
            f"stopped with `/cxr stop {self.version_name}`."
        )
        if self.serving:
            text += " X-rays posted from now on are screened by it."
        return text


@dataclass
class OperationFailed(Described):
    """A start, stop or training that ended badly, and why."""

    version_name: str = ""
    reason: str = ""
    by: str = ""


@dataclass
class ModelStartFailed(OperationFailed):
    def describe(self, who: Who = plain) -> str:
        reason = self.reason or "Rekognition gave no reason"
        return f"{self.version_name} failed to start (asked by {who(self.by)}): {reason}"


@dataclass
class ModelStopped(RunNotice):
    def describe(self, who: Who = plain) -> str:
        text = f"{self.version_name} has stopped (asked by {who(self.by)})."
        if self.ran_seconds is not None and self.cost is not None:
            text += f" It ran for {duration(self.ran_seconds)}, an estimated {usd(self.cost)}."
        else:
            text += " I have no record of when it started, so no cost for this run."
        return text


@dataclass
class ModelStopFailed(OperationFailed):
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
class TrainingFailed(OperationFailed):
    def describe(self, who: Who = plain) -> str:
        return f"Training {self.version_name} failed (asked by {who(self.by)}): {self.reason}"
