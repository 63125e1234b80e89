"""What the model fleet tells people, as facts: replies to the person who asked (ephemeral),
the outcomes of operations posted in the channel, and the cost guard's alerts and reports.
`bot.slack.fleet` words every kind; costs are estimates from the configured prices.
`/cxr status` is `bot.core.fleet.status`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

from bot.core.errors import AwsFailure
from bot.core.model_versions import LabelMetrics
from bot.core.ports import Notice
from bot.core.schedule import Window
from bot.core.training_data import Problem


@dataclass
class Answer(Notice):
    """A short answer to the person who asked, in a tone: done, refused, not now, an error."""

    tone: str = "info"  # info | ok | refused | busy | error


# Why a command won't do what was asked; `bot.slack.fleet` words each.
RefusalReason = Literal[
    "rekognition-only",  # no Rekognition project: the local model only
    "gone",  # the version being confirmed no longer exists
    "bad-units",  # a minimum under 1, or a maximum under the minimum
    "over-cap",  # more inference units than the bot may start
    "no-versions",  # the project has none yet
    "none-ready",  # none has finished training
    "no-such-version",  # `wanted` isn't one of `names`
    "already-running",
    "already-starting",
    "stopping",  # can't start while stopping
    "still-training",
    "failed-to-train",
    "cannot-start",  # not startable in its `status`
    "already-stopping",
    "not-running",  # can't stop it in its `status`
    "nothing-running",
    "several-running",  # which of `names` to stop?
    "bad-source",  # not an s3:// folder (`detail` says why)
    "no-output",  # nowhere configured to write a training's manifest and output
    "training-elsewhere",  # a training the bot doesn't follow is under way
    "name-in-use",  # another operation claimed the name first
    "bad-name",  # `wanted` can't be a version name
    "name-taken",  # a version is already called `wanted`
    "busy",  # an operation held the version a moment ago
]


# Refusals that say "not now" or "no need" (tone "busy") rather than "that can't be done".
NOT_NOW = frozenset(
    {
        "already-running",
        "already-starting",
        "stopping",
        "still-training",
        "already-stopping",
        "not-running",
        "nothing-running",
        "training-elsewhere",
        "name-in-use",
        "busy",
    }
)


@dataclass
class Refused(Answer):
    """What was asked can't be done (tone "refused"), or needn't or can't be now ("busy": its
    reason is in `NOT_NOW`)."""

    reason: RefusalReason = "cannot-start"
    version_name: str = ""
    status: str = ""
    action: str = ""  # the /cxr command refused
    wanted: str = ""  # the version asked for
    names: list[str] = field(default_factory=list)  # the versions there are (or running)
    detail: str = ""  # the version's status message; the local model's; why a source is bad
    min_units: int = 1
    max_units: int | None = None
    cap: int = 0  # the most inference units the bot may start
    hourly: float = 0.0  # estimated cost an hour at `cap`
    ran_seconds: float | None = None  # how long it has been running, when known
    posting: bool = False  # its outcome will be posted in the channel asked in

    def __post_init__(self) -> None:
        self.tone = "busy" if self.reason in NOT_NOW else "refused"


@dataclass
class VersionsUnreadable(Answer):
    """Rekognition couldn't list the project's versions."""

    failure: AwsFailure = field(default_factory=AwsFailure)
    tone: str = "error"


@dataclass
class SourceUnreadable(Answer):
    """The training images' folder couldn't be checked (an AWS error)."""

    source: str = ""
    failure: AwsFailure = field(default_factory=AwsFailure)
    tone: str = "error"


@dataclass
class RequestFailed(Answer):
    """Rekognition refused to start or stop a version."""

    action: str = "start"  # start | stop
    version_name: str = ""
    failure: AwsFailure = field(default_factory=AwsFailure)
    tone: str = "error"


@dataclass
class VersionNotice(Notice):
    """Something about a version, and who asked for it."""

    version_name: str = ""
    by: str = ""


@dataclass
class Busy(VersionNotice):
    """Something already happens to the version (`by` asked for it): what, when, where its
    outcome will be posted (instead of asking AWS again)."""

    kind: str = ""  # the operation under way: start | stop | train
    asked: str = ""  # what is asked for now: a second training ("train") waits its turn
    asker: str = ""  # who is asking now
    age_seconds: float = 0.0
    channel: str = ""  # where the outcome will be posted
    phase: str = ""  # the training's phase, when a second one is asked for


@dataclass
class TrainingStarted(Answer):
    """The images passed the checks and the manifest is written: the training is under way."""

    version_name: str = ""
    source: str = ""
    counts: dict[str, int] = field(default_factory=dict)  # images per label
    manifest: str = ""  # where it is written (s3://…)
    tone: str = "ok"


@dataclass
class TrainingRefused(Notice):
    source: str = ""
    problems: list[Problem] = field(default_factory=list)


@dataclass
class UnitsNotice(VersionNotice):
    """A version with the inference units it runs (or would run) with, and what they cost."""

    min_units: int = 1
    max_units: int | None = None
    hourly_low: float = 0.0  # estimated cost an hour at min_units
    hourly_high: float = 0.0  # … and at max_units


@dataclass
class StartProposal(UnitsNotice):
    version_arn: str = ""
    f1: float | None = None
    status: str = ""
    others_running: list[str] = field(default_factory=list)


@dataclass
class StartRequested(UnitsNotice):
    pass


@dataclass
class ModelRunning(UnitsNotice):
    took_seconds: float = 0.0


@dataclass
class StartCancelled(VersionNotice):
    pass


@dataclass
class RunNotice(VersionNotice):
    """A version's run being stopped: how long it ran and what it cost, when the bot knows."""

    ran_seconds: float | None = None
    cost: float | None = None


@dataclass
class StopRequested(RunNotice):
    pass


@dataclass
class ModelStopped(RunNotice):
    pass


# Why a start, stop or training failed (or, "slow", is slow); `bot.slack.fleet` words each.
FailureReason = Literal[
    "rekognition",  # Rekognition's status message (`detail`), if it gave one
    "gone",  # the version no longer exists in the project
    "never-sent",  # a restart came before the request reached Rekognition (now: `status`)
    "not-running",  # a start ended in `status`, not RUNNING
    "not-stopped",  # a stop did not take effect: the version is `status`
    "slow",  # still STOPPING after `decisions.SLOW_STOP`
    "interrupted",  # a restart cut a training's image checks short (`detail`: its source)
    "old-dataset",  # the old `status` (TRAIN or TEST) dataset couldn't be deleted
    "datasets",  # creating the datasets failed
    "dataset-failed",  # the `status` dataset failed to import or split
    "nothing-imported",  # no labelled images imported (`detail`: entries with errors)
    "split",  # the split failed
    "split-empty",  # the split left the test dataset empty
    "create-version",  # CreateProjectVersion failed
]


@dataclass
class OperationFailed(VersionNotice):
    """A start, stop or training that ended badly, and why: a reason, the version's (or a
    dataset's) `status` and Rekognition's message (`detail`) or the AWS `failure`."""

    reason: FailureReason = "rekognition"
    status: str = ""
    detail: str = ""
    failure: AwsFailure | None = None

    @property
    def result(self) -> str:
        """The audit's short plain result: "failed: " with the reason, status and detail (or
        the AWS failure's code)."""
        detail = self.failure.code if self.failure else self.detail
        facts = [self.reason if self.reason != "rekognition" else "", self.status, detail]
        return "failed: " + (", ".join(f for f in facts if f) or "no reason given")


@dataclass
class ModelStartFailed(OperationFailed):
    pass


@dataclass
class ModelStopFailed(OperationFailed):
    pass


@dataclass
class TrainingFailed(OperationFailed):
    pass


@dataclass
class TrainingProgress(VersionNotice):
    """The message a training posts when it starts, updated in place as it moves along."""

    source: str = ""
    counts: dict[str, int] = field(default_factory=dict)  # images per label
    phase: str = "datasets"
    imported: list[int] | None = None  # images imported, and with errors (skipped)
    split: list[int] | None = None  # training and test images
    detail: str = ""
    replacing: bool = False  # the project's datasets are replaced
    done: bool = False


@dataclass
class TrainingCompleted(VersionNotice):
    f1: float | None = None
    labels: list[LabelMetrics] = field(default_factory=list)
    billable_seconds: int | None = None
    cost: float | None = None
    train_images: int | None = None
    test_images: int | None = None


# --- the cost guard (the ops channel) ----------------------------------------------------
# Actions on an idle alert (Slack action_ids use these names).
STOP = "stop"
KEEP_1H = "keep_1h"
KEEP_4H = "keep_4h"
KEEP_HOURS = {KEEP_1H: 1, KEEP_4H: 4}

# States of an idle alert (the episode's thread root).
OPEN = "open"
SNOOZED = "snoozed"
STOPPED = "stopped"  # by an admin's button
AUTO_STOPPED = "auto-stopped"
SCHEDULE_STOPPED = "schedule-stopped"
STOPPED_ELSEWHERE = "stopped-elsewhere"  # console, CLI, /cxr stop
RESUMED = "resumed"  # traffic came back
STOP_FAILED = "stop-failed"


# Why the guard's stop or start wasn't asked for: AWS said no, or the version is busy.
Refusal = Busy | Refused | RequestFailed


@dataclass
class PricedNotice(Notice):
    """The facts every cost guard notice about one model version carries."""

    version_name: str = ""
    units: int = 1
    hourly: float = 0.0  # USD per hour at these units
    zone: str = "UTC"  # the zone times are shown in


@dataclass(frozen=True)
class Sight:
    """What the guard can see of a version's traffic, and so what auto-stop will do."""

    auto_stop: str = "off"  # an `AutoStop` value: off | sole-client | owned | not-visible
    cloudwatch_failure: AwsFailure | None = None  # why CloudWatch couldn't be read just now


@dataclass
class IdleAlert(PricedNotice):
    """The first message of an idle episode (its thread root), updated in place."""

    episode_id: int = 0
    idle_since: datetime | None = None
    idle_seconds: float = 0.0
    idle_cost: float = 0.0
    threshold_minutes: float = 30.0
    auto_stop_at: datetime | None = None  # when auto-stop will act (None: off or snoozed)
    state: str = OPEN
    actor: str | None = None  # who pressed the last button / what stopped it
    acted_at: datetime | None = None
    snoozed_until: datetime | None = None
    refused: Refusal | None = None  # why the stop failed
    sight: Sight = field(default_factory=Sight)

    @property
    def actions(self) -> tuple[str, ...]:
        """The buttons this alert still offers."""
        if self.state in (OPEN, STOP_FAILED):
            return (STOP, KEEP_1H, KEEP_4H)
        return (STOP,) if self.state == SNOOZED else ()


@dataclass
class IdleFollowUp(PricedNotice):
    """A reminder in the episode's thread (backed off: each one waits longer)."""

    idle_seconds: float = 0.0
    idle_cost: float = 0.0
    next_at: datetime | None = None
    snooze_ended_by: str | None = None  # set when this follows an expired snooze
    auto_stop_at: datetime | None = None
    sight: Sight = field(default_factory=Sight)


@dataclass
class GuardStopped(PricedNotice):
    """The cost guard stopped a model (auto-stop, an admin's button, or the schedule)."""

    reason: str = AUTO_STOPPED  # AUTO_STOPPED | STOPPED | SCHEDULE_STOPPED
    by: str | None = None
    idle_seconds: float = 0.0
    idle_cost: float = 0.0
    run_seconds: float = 0.0
    run_cost: float = 0.0
    next_window: datetime | None = None  # the schedule's next start, when there is one
    saved_until_next_window: float | None = None


@dataclass
class StopFailed(PricedNotice):
    """The guard's stop failed: it wasn't asked for (`refused`, reported once per episode),
    or the stop it asked for didn't take effect or is slow (`failure`)."""

    refused: Refusal | None = None
    failure: OperationFailed | None = None


@dataclass
class ScheduleNotice(PricedNotice):
    """The schedule started a model before its window (stops are `GuardStopped`)."""

    window: Window | None = None  # its days and hours
    window_start: datetime | None = None  # this run of it
    window_end: datetime | None = None
    refused: Refusal | None = None  # why the start wasn't asked for (None: it was)

    @property
    def ok(self) -> bool:
        return self.refused is None


@dataclass
class SpendRow:
    """One version's day: summed over its runs and idle episodes as the guard reads them."""

    version_name: str
    running_seconds: float = 0.0
    units: int = 0  # the most units it ran on
    cost: float = 0.0
    requests: int | None = None  # all clients (CloudWatch); None when unknown
    images: int = 0  # classified by the bot
    idle_seconds: float = 0.0  # time in idle episodes (alerted ones)
    idle_cost: float = 0.0

    @property
    def hours(self) -> float:
        return self.running_seconds / 3600

    @property
    def cost_per_image(self) -> float | None:
        return self.cost / self.images if self.images else None


@dataclass
class SpendSummary(Notice):
    """The daily message: what each model cost on one (local) day."""

    day: date | None = None
    rows: list[SpendRow] = field(default_factory=list)
    running_now: list[str] = field(default_factory=list)  # versions still running
    zone: str = "UTC"

    @property
    def total(self) -> float:
        return sum(row.cost for row in self.rows)
