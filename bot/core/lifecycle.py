"""The Rekognition model's lifecycle: status, start, stop and train, followed to the end.

Commands claim an operation (`bot.state.operations`) before asking AWS for anything, so a
second request finds it and is told what is already happening. One watcher task follows every
open operation: each `tick` reads the project's versions once and moves each operation along
(training also walks through its datasets), posting the outcome in the channel the command came
from. Operations survive restarts: `resume` (a background job at start-up) picks them up.

No Slack and no boto3 here: AWS is reached through `ModelCatalog`, `TrainingBackend` and
`ImageStore`, the chat through `Outbox`. AWS errors are read by duck typing (`aws_error`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.core import model_versions as mv
from bot.core.clock import Clock
from bot.core.errors import UserFacingError
from bot.core.labels import ModelInfo
from bot.core.lifecycle_notices import (
    AuditLine,
    Busy,
    LifecycleReply,
    ModelRunning,
    ModelStartFailed,
    ModelStopFailed,
    ModelStopped,
    OperationLine,
    StartCancelled,
    StartProposal,
    StartRequested,
    StatusReport,
    StopRequested,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRefused,
    VersionRow,
)
from bot.core.model_versions import LabelMetrics, ModelCatalog, ModelVersion
from bot.core.ports import Notice, Outbox, PostedMessage
from bot.core.pricing import Prices
from bot.core.training_data import (
    ImageStore,
    Problem,
    S3Uri,
    image_problems,
    layout_problems,
    manifest,
    scan,
    valid_version_name,
)
from bot.state.audit import AuditLog
from bot.state.operations import START, STOP, TRAIN, Operation, OperationStore
from bot.state.runs import Run, RunStore

log = logging.getLogger(__name__)

STARTABLE = frozenset({mv.TRAINING_COMPLETED, mv.STOPPED, mv.FAILED, "COPYING_COMPLETED"})
STOPPABLE = frozenset({mv.RUNNING, mv.STARTING})
STATUS_VERSIONS_SHOWN = 12
EVALUATIONS_FETCHED = 6  # per /cxr status: summary files read from S3 (then cached)
AUDIT_LINES = 5
UNEXPECTED_READINGS = 3  # polls showing an unexpected status before an operation is failed

# train phases (Operation.phase)
VALIDATING = "validating"
DATASETS = "datasets"
CREATING = "creating"
SPLITTING = "splitting"
TRAINING = "training"
# start/stop phases
REQUESTED = "requested"  # claimed, AWS not (yet) known to have accepted
FOLLOWING = "following"  # AWS accepted, or the change was already under way


# --- ports ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetInfo:
    arn: str
    type: str  # TRAIN | TEST
    status: str
    status_message: str = ""
    total: int | None = None
    labelled: int | None = None
    errors: int | None = None


@dataclass(frozen=True)
class Evaluation:
    """The training results summary file: overall and per-label metrics."""

    f1: float | None = None
    precision: float | None = None
    recall: float | None = None
    labels: tuple[LabelMetrics, ...] = ()
    train_images: int | None = None
    test_images: int | None = None


class TrainingBackend(Protocol):
    """Rekognition's datasets and training (the adapter: `bot.adapters.rekognition_training`)."""

    async def project_datasets(self) -> list[DatasetInfo]: ...

    async def describe_dataset(self, arn: str) -> DatasetInfo: ...

    async def create_dataset(self, dataset_type: str, manifest: tuple[str, str] | None) -> str:
        """Create the TRAIN (from a manifest: (bucket, key)) or an empty TEST dataset."""
        ...

    async def delete_dataset(self, arn: str) -> None: ...

    async def distribute(self, train_arn: str, test_arn: str) -> None: ...

    async def create_version(self, name: str, output_bucket: str, output_prefix: str) -> str: ...

    async def evaluation(self, summary: tuple[str, str]) -> Evaluation: ...


class Serving(Protocol):
    """Which model the bot answers with; the lifecycle switches it when a version runs."""

    def current(self) -> ModelInfo: ...

    def version_arn(self) -> str | None: ...

    def has_fallback(self) -> bool:
        """Whether the local model answers while the Rekognition version isn't running."""
        ...

    def serve(self, version_arn: str) -> None: ...

    def stopped(self, version_arn: str) -> None: ...


class RouterServing:
    """`Serving` on the `ModelRouter`: the primary becomes a classifier on the running version."""

    def __init__(self, router: Any, make_primary: Callable[[str], Any]) -> None:
        self.router = router
        self.make_primary = make_primary

    def current(self) -> ModelInfo:
        return self.router.model

    def version_arn(self) -> str | None:
        return getattr(self.router.primary, "version_arn", None)

    def has_fallback(self) -> bool:
        return bool(self.router.fallback)

    def serve(self, version_arn: str) -> None:
        primary = self.router.primary
        if primary is not None and hasattr(primary, "version_arn"):
            primary.version_arn = version_arn
        else:
            self.router.primary = self.make_primary(version_arn)
        self.router.set_primary_running(True)
        log.info("serving.switched", extra={"version_arn": version_arn})

    def stopped(self, version_arn: str) -> None:
        if self.version_arn() == version_arn:
            self.router.set_primary_running(False)


@dataclass(frozen=True)
class LifecycleConfig:
    project_arn: str | None = None
    region: str | None = None
    output: S3Uri | None = None  # where manifests go and training writes its output
    poll_seconds: float = 30.0
    max_units: int = 10
    ops_channel: str | None = None
    min_images_per_label: int = 10
    serve_running_on_start: bool = False  # project set without a version: serve what runs

    @property
    def project_name(self) -> str:
        if not self.project_arn:
            return ""
        parts = self.project_arn.split(":", 5)[-1].split("/")
        return parts[1] if len(parts) > 1 else self.project_arn


def aws_error(exc: BaseException) -> str:
    """A readable sentence for an AWS failure (botocore's ClientError, read by duck typing)."""
    if isinstance(exc, UserFacingError):
        return exc.reply
    error = getattr(exc, "response", {}) or {}
    details = error.get("Error", {}) if isinstance(error, dict) else {}
    code = details.get("Code", "")
    message = details.get("Message", "")
    name = type(exc).__name__
    if code in ("AccessDeniedException", "AccessDenied", "UnrecognizedClientException"):
        return f"AWS refused the bot's credentials ({code}: {message}). Check its IAM policy."
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return "The bot has no AWS credentials configured."
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"):
        return "I couldn't reach AWS just now; please try again in a few minutes."
    if code:
        return f"{code}: {message}" if message else code
    return f"{name}: {exc}" if str(exc) else name


@dataclass
class _Snapshot:
    by_name: dict[str, ModelVersion] = field(default_factory=dict)

    @classmethod
    def of(cls, versions: Sequence[ModelVersion]) -> _Snapshot:
        return cls({v.name: v for v in versions})

    def find(self, name_or_arn: str) -> ModelVersion | None:
        found = self.by_name.get(name_or_arn)
        if found is None:
            found = next((v for v in self.by_name.values() if v.arn == name_or_arn), None)
        return found

    def newest_first(self) -> list[ModelVersion]:
        epoch = datetime.min
        return sorted(
            self.by_name.values(),
            key=lambda v: (v.created.replace(tzinfo=None) if v.created else epoch, v.name),
            reverse=True,
        )


class Lifecycle:
    def __init__(
        self,
        *,
        config: LifecycleConfig,
        catalog: ModelCatalog | None,
        training: TrainingBackend | None,
        images: ImageStore | None,
        operations: OperationStore,
        runs: RunStore,
        audit: AuditLog,
        prices: Prices,
        outbox: Outbox,
        clock: Clock,
        serving: Serving,
        model_card: Callable[[], dict[str, Any] | None] = lambda: None,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.training = training
        self.images = images
        self.ops = operations
        self.runs = runs
        self.audit = audit
        self.prices = prices
        self.outbox = outbox
        self.clock = clock
        self.serving = serving
        self.model_card = model_card
        self._tasks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._sleeping = False
        self._in_command: set[int] = set()  # ops whose command is still running here
        self._evaluations: dict[str, Evaluation] = {}

    @property
    def rekognition(self) -> bool:
        return self.catalog is not None

    # === /cxr status ========================================================================
    async def status(self) -> StatusReport:
        now = self.clock.now()
        audit = [AuditLine(a.at, a.actor, a.action, a.target, a.result) for a in self._audit()]
        operations = [
            OperationLine(op.kind, op.version_name, op.user, op.started_at, op.phase, op.channel)
            for op in self.ops.open()
        ]
        serving = self._serving_phrase()
        common = {
            "audit": audit,
            "operations": operations,
            "now": now,
            "inference_unit_hour": self.prices.inference_unit_hour,
        }
        if self.catalog is None:
            card = self.model_card()
            return StatusReport(
                serving=serving,
                local_card=card or {},
                notes=[
                    "The local model is the only classifier: /cxr start, stop and train manage a "
                    "Rekognition Custom Labels model and need CXR_PROJECT_ARN (and AWS_REGION)."
                ],
                **common,
            )
        try:
            versions = await self.catalog.versions()
        except Exception as exc:
            log.warning("status.describe_failed", extra={"error": aws_error(exc)})
            return StatusReport(
                project=self.config.project_name,
                serving=serving,
                notes=[f"I couldn't read the project's versions: {aws_error(exc)}"],
                **common,
            )
        snapshot = _Snapshot.of(versions)
        self._sync(snapshot)
        serving = self._serving_phrase(snapshot)
        ordered = snapshot.newest_first()
        shown = ordered[:STATUS_VERSIONS_SHOWN]
        await self._load_evaluations(shown[:EVALUATIONS_FETCHED])
        open_ops = {op.version_name: op for op in self.ops.open()}
        serving_arn = self.serving.version_arn()
        rows = [self._row(v, now, serving_arn, open_ops.get(v.name)) for v in shown]
        notes = [
            f"Prices are estimates: {_usd(self.prices.inference_unit_hour)} per inference-unit "
            f"hour while running, {_usd(self.prices.training_hour)} per training hour."
        ]
        return StatusReport(
            project=self.config.project_name,
            rows=rows,
            hidden_versions=len(ordered) - len(shown),
            serving=serving,
            notes=notes,
            **common,
        )

    def _row(
        self, version: ModelVersion, now: datetime, serving_arn: str | None, op: Operation | None
    ) -> VersionRow:
        run = self.runs.current(version.arn) if version.running else None
        evaluation = self._evaluations.get(version.arn)
        return VersionRow(
            name=version.name,
            arn=version.arn,
            status=version.status,
            status_message=version.status_message,
            created=version.created,
            f1=version.f1 if version.f1 is not None else (evaluation.f1 if evaluation else None),
            labels=evaluation.labels if evaluation else (),
            min_units=version.min_units,
            max_units=version.max_units,
            running_seconds=run.seconds(now) if run else None,
            cost_so_far=self.prices.running_cost(run.units, run.started_at, now) if run else None,
            serving=version.arn == serving_arn,
            operation=_ing(op.kind) if op else None,
            operation_by=op.user if op else "",
            billable_training_seconds=version.billable_training_seconds,
        )

    def _serving_phrase(self, snapshot: _Snapshot | None = None) -> str:
        phrase = self.serving.current().describe()
        arn = self.serving.version_arn()
        version = snapshot.find(arn) if snapshot is not None and arn else None
        if version is not None and not version.running:
            phrase += f" (it is {version.status}: " + (
                "the local model answers meanwhile)"
                if self.serving.has_fallback()
                else "X-rays get no verdict until it is started)"
            )
        return phrase

    async def _load_evaluations(self, versions: Sequence[ModelVersion]) -> None:
        if self.training is None:
            return
        wanted = [v for v in versions if v.evaluation_summary_s3 and v.arn not in self._evaluations]

        async def load(version: ModelVersion) -> None:
            assert self.training is not None and version.evaluation_summary_s3 is not None
            try:
                self._evaluations[version.arn] = await self.training.evaluation(
                    version.evaluation_summary_s3
                )
            except Exception as exc:
                log.info("status.evaluation_unavailable", extra={"error": aws_error(exc)})

        await asyncio.gather(*(load(v) for v in wanted))

    def _audit(self) -> list[Any]:
        return self.audit.recent(AUDIT_LINES)

    # === /cxr start =========================================================================
    async def propose_start(
        self, actor: str, version: str | None, min_units: int | None, max_units: int | None
    ) -> Notice:
        """The cost of starting, to be confirmed; or why not, or what is already happening."""
        if self.catalog is None:
            return self.rekognition_only("start")
        low, high, refusal = self._units(min_units, max_units)
        if refusal:
            return refusal
        try:
            snapshot = _Snapshot.of(await self.catalog.versions())
        except Exception as exc:
            return _reply(f"I couldn't read the model versions: {aws_error(exc)}", "error")
        chosen = self._choose_to_start(snapshot, version)
        if isinstance(chosen, Notice):
            return chosen
        blocker = self._start_blocker(chosen, actor)
        if blocker:
            return blocker
        others = [v.name for v in snapshot.by_name.values() if v.running and v.arn != chosen.arn]
        return StartProposal(
            version_name=chosen.name,
            version_arn=chosen.arn,
            min_units=low,
            max_units=high,
            hourly_low=self.prices.hourly(low),
            hourly_high=self.prices.hourly(high or low),
            f1=chosen.f1,
            status=chosen.status,
            others_running=others,
        )

    async def confirm_start(
        self, actor: str, channel: str, version_arn: str, min_units: int, max_units: int | None
    ) -> Notice:
        """StartProjectVersion, unless the version is already starting or running."""
        if self.catalog is None:
            return self.rekognition_only("start")
        low, high, refusal = self._units(min_units, max_units)
        if refusal:
            return refusal
        try:
            snapshot = _Snapshot.of(await self.catalog.versions())
        except Exception as exc:
            return _reply(f"I couldn't read the model versions: {aws_error(exc)}", "error")
        version = snapshot.find(version_arn)
        if version is None:
            return _reply(
                "That model version doesn't exist any more. Run `/cxr status`.", "refused"
            )
        blocker = self._start_blocker(version, actor, channel)
        if blocker:
            return blocker
        now = self.clock.now()
        op = self.ops.claim(
            START,
            version.name,
            version_arn=version.arn,
            channel=channel,
            user=actor,
            at=now,
            status=version.status,
            phase=REQUESTED,
            data={"min_units": low, "max_units": high},
        )
        if op is None:
            return self._already(version, self.ops.open_for(version.name), actor)
        self._in_command.add(op.id)
        try:
            status = await self.catalog.start(version.arn, low, high)
        except Exception as exc:
            reason = aws_error(exc)
            self.ops.finish(op.id, self.clock.now(), f"failed: {reason}")
            self.audit.record(now, actor, "start", version.name, f"failed: {reason}")
            return _reply(f"Rekognition didn't start {version.name}: {reason}", "error")
        finally:
            self._in_command.discard(op.id)
        self.ops.update(op.id, status=status, phase=FOLLOWING)
        self.audit.record(
            now, actor, "start", version.name, f"requested ({_units_text(low, high)})"
        )
        log.info("lifecycle.start_requested", extra={"version": version.name, "units": low})
        self._ensure_watcher()
        return StartRequested(
            version_name=version.name,
            min_units=low,
            max_units=high,
            hourly_low=self.prices.hourly(low),
            hourly_high=self.prices.hourly(high or low),
            by=actor,
        )

    def cancel_start(self, actor: str, version_name: str) -> Notice:
        self.audit.record(self.clock.now(), actor, "start", version_name, "cancelled")
        return StartCancelled(version_name=version_name, by=actor)

    def _units(
        self, min_units: int | None, max_units: int | None
    ) -> tuple[int, int | None, Notice | None]:
        low = 1 if min_units is None else min_units
        high = max_units
        cap = self.config.max_units
        if low < 1 or (high is not None and high < low):
            return (
                low,
                high,
                _reply(
                    "Inference units: the minimum must be at least 1 and the maximum at least the "
                    "minimum, e.g. `/cxr start cxr.v2 1 3`.",
                    "refused",
                ),
            )
        if max(low, high or low) > cap:
            return (
                low,
                high,
                _reply(
                    f"That's more than the {cap} inference units I'm allowed to start "
                    f"(about {_usd(self.prices.hourly(cap))}/hour at {cap}). Ask an admin to raise "
                    "CXR_MAX_INFERENCE_UNITS if you really need more.",
                    "refused",
                ),
            )
        return low, high, None

    def _choose_to_start(self, snapshot: _Snapshot, wanted: str | None) -> ModelVersion | Notice:
        if not snapshot.by_name:
            return _reply(
                "The project has no model versions yet. Train one with "
                "`/cxr train s3://bucket/prefix`.",
                "refused",
            )
        if wanted:
            found = snapshot.find(wanted)
            if found is None:
                names = ", ".join(v.name for v in snapshot.newest_first()[:10])
                return _reply(
                    f"There's no version `{wanted}` in the project. Versions: {names}.", "refused"
                )
            return found
        serving = self.serving.version_arn()
        ordered = snapshot.newest_first()
        for version in ordered:
            if version.arn == serving and version.status in STARTABLE | STOPPABLE:
                return version
        for version in ordered:
            if version.status in STARTABLE:
                return version
        busy = next((v for v in ordered if v.status in STOPPABLE), None)
        if busy is not None:
            return busy  # reported as "already running/starting" by the blocker
        return _reply(
            "No version is ready to start (none has finished training). See `/cxr status`.",
            "refused",
        )

    def _start_blocker(
        self, version: ModelVersion, actor: str, channel: str | None = None
    ) -> Notice | None:
        op = self.ops.open_for(version.name)
        if op is not None:
            return self._already(version, op, actor)
        status = version.status
        if status == mv.RUNNING:
            run = self.runs.current(version.arn)
            since = f" for {_duration(run.seconds(self.clock.now()))}" if run else ""
            return _reply(
                f"{version.name} is already running{since} "
                f"({_units_text(version.min_units or 1, version.max_units)}). "
                f"Nothing to do; `/cxr stop {version.name}` stops it.",
                "busy",
            )
        if status == mv.STARTING:
            if channel is not None:
                self._adopt(START, version, actor, channel)
            return _reply(
                f"{version.name} is already starting (not asked by me, or before a restart). "
                "I'll post in this channel when it's running."
                if channel
                else f"{version.name} is already starting.",
                "busy",
            )
        if status == mv.STOPPING:
            return _reply(
                f"{version.name} is stopping right now; start it again once it has stopped.",
                "busy",
            )
        if status == mv.TRAINING_IN_PROGRESS:
            return _reply(f"{version.name} is still training.", "busy")
        if status == mv.TRAINING_FAILED:
            return _reply(
                f"{version.name} failed to train, so it can't be started: "
                f"{version.status_message or 'no reason given'}",
                "refused",
            )
        if status not in STARTABLE:
            return _reply(f"{version.name} can't be started in its state ({status}).", "refused")
        return None

    def _adopt(self, kind: str, version: ModelVersion, actor: str, channel: str) -> None:
        """Follow a change started elsewhere (console, before a restart) to post its outcome."""
        op = self.ops.claim(
            kind,
            version.name,
            version_arn=version.arn,
            channel=channel,
            user=actor,
            at=self.clock.now(),
            status=version.status,
            phase=FOLLOWING,
            data={"adopted": True, "min_units": version.min_units or 1},
        )
        if op is not None:
            self._ensure_watcher()

    def _already(self, version: ModelVersion, op: Operation | None, actor: str) -> Notice:
        if op is None:
            return _reply(f"{version.name} is busy; try again in a moment.", "busy")
        what = {START: "already starting", STOP: "stopping", TRAIN: "still training"}
        return Busy(
            version_name=version.name,
            what=what.get(op.kind, op.kind),
            by=op.user,
            asker=actor,
            age_seconds=(self.clock.now() - op.started_at).total_seconds(),
            channel=op.channel,
        )

    # === /cxr stop ==========================================================================
    async def stop(self, actor: str, channel: str, version: str | None = None) -> Notice:
        """StopProjectVersion on the named (or the only running) version."""
        if self.catalog is None:
            return self.rekognition_only("stop")
        try:
            snapshot = _Snapshot.of(await self.catalog.versions())
        except Exception as exc:
            return _reply(f"I couldn't read the model versions: {aws_error(exc)}", "error")
        now = self.clock.now()
        self._sync(snapshot)
        if version:
            chosen = snapshot.find(version)
            if chosen is None:
                names = ", ".join(v.name for v in snapshot.newest_first()[:10]) or "none"
                return _reply(
                    f"There's no version `{version}` in the project. Versions: {names}.",
                    "refused",
                )
        else:
            live = [v for v in snapshot.newest_first() if v.status in STOPPABLE | {mv.STOPPING}]
            if not live:
                return _reply(
                    "No model version is running, so there's nothing to stop (and nothing "
                    "being billed for inference).",
                    "busy",
                )
            if len(live) > 1:
                names = ", ".join(v.name for v in live)
                return _reply(
                    f"Several versions are running: {names}. Say which: "
                    f"`/cxr stop {live[0].name}`.",
                    "refused",
                )
            chosen = live[0]
        op = self.ops.open_for(chosen.name)
        if op is not None and op.kind in (STOP, TRAIN):
            return self._already(chosen, op, actor)
        if chosen.status == mv.STOPPING:
            self._adopt(STOP, chosen, actor, channel)
            return _reply(
                f"{chosen.name} is already stopping. I'll post in this channel when it has "
                "stopped.",
                "busy",
            )
        if chosen.status not in STOPPABLE:
            return _reply(
                f"{chosen.name} isn't running (it is {chosen.status}), so there's nothing to stop.",
                "busy",
            )
        if op is not None:  # a start in flight: the stop takes over
            self.ops.finish(op.id, now, "superseded by a stop")
        run = self.runs.current(chosen.arn)
        claimed = self.ops.claim(
            STOP,
            chosen.name,
            version_arn=chosen.arn,
            channel=channel,
            user=actor,
            at=now,
            status=chosen.status,
            phase=REQUESTED,
        )
        if claimed is None:
            return self._already(chosen, self.ops.open_for(chosen.name), actor)
        self._in_command.add(claimed.id)
        try:
            status = await self.catalog.stop(chosen.arn)
        except Exception as exc:
            reason = aws_error(exc)
            self.ops.finish(claimed.id, self.clock.now(), f"failed: {reason}")
            self.audit.record(now, actor, "stop", chosen.name, f"failed: {reason}")
            return _reply(f"Rekognition didn't stop {chosen.name}: {reason}", "error")
        finally:
            self._in_command.discard(claimed.id)
        self.ops.update(claimed.id, status=status, phase=FOLLOWING)
        self.audit.record(now, actor, "stop", chosen.name, "requested")
        log.info("lifecycle.stop_requested", extra={"version": chosen.name})
        self._ensure_watcher()
        return StopRequested(
            version_name=chosen.name,
            ran_seconds=run.seconds(now) if run else None,
            cost=self.prices.running_cost(run.units, run.started_at, now) if run else None,
            by=actor,
        )

    # === /cxr train =========================================================================
    async def train(
        self, actor: str, channel: str, source_text: str, version_name: str | None = None
    ) -> Notice:
        """Check the folder tree, write the manifest, and set the training going.

        The checks read every image's header, which takes a while for thousands of images, so
        the caller has acknowledged the command already.
        """
        if self.catalog is None or self.training is None or self.images is None:
            return self.rekognition_only("train")
        try:
            source = S3Uri.parse(source_text)
        except ValueError as exc:
            return _reply(f"{exc}.", "refused")
        output = self.config.output
        if output is None:
            return _reply(
                "Training needs somewhere to write the manifest and the model's output: an admin "
                "must set CXR_TRAINING_OUTPUT_S3 (s3://bucket/prefix, in the bot's region).",
                "refused",
            )
        busy = self.ops.open_training()
        if busy is not None:
            return self._training_busy(busy, actor)
        if version_name is not None and not valid_version_name(version_name):
            return self._refuse_train(
                actor,
                version_name,
                f"`{version_name}` can't be a version name: use 1 to 255 letters, digits, "
                "dots, dashes and underscores.",
            )
        try:
            snapshot = _Snapshot.of(await self.catalog.versions())
        except Exception as exc:
            return _reply(f"I couldn't read the model versions: {aws_error(exc)}", "error")
        training = next(
            (v for v in snapshot.by_name.values() if v.status == mv.TRAINING_IN_PROGRESS), None
        )
        if training is not None:
            return _reply(
                f"{training.name} is already training in this project (started outside the "
                "bot or before a restart). One training at a time: try again when it ends.",
                "busy",
            )
        now = self.clock.now()
        if version_name is None:
            version_name = self._free_name(snapshot, now)
        elif snapshot.find(version_name) is not None:
            return self._refuse_train(
                actor,
                version_name,
                f"The name `{version_name}` is already used by a version in this project. "
                "Pick another, or leave it out and I'll choose one.",
            )
        op = self.ops.claim(
            TRAIN,
            version_name,
            channel=channel,
            user=actor,
            at=now,
            status="VALIDATING",
            phase=VALIDATING,
            data={"source": str(source)},
        )
        if op is None:
            busy = self.ops.open_training() or self.ops.open_for(version_name)
            if busy is not None:
                return self._training_busy(busy, actor)
            return _reply("Another operation is using that name; try again.", "busy")
        self._in_command.add(op.id)
        try:
            return await self._validate_and_launch(op, actor, channel, source, output)
        except Exception as exc:
            reason = aws_error(exc)
            log.warning("lifecycle.train_check_failed", extra={"error": reason})
            self.ops.finish(op.id, self.clock.now(), f"failed: {reason}")
            self.audit.record(now, actor, "train", version_name, f"failed: {reason}")
            return _reply(f"I couldn't check {source}: {reason}", "error")
        finally:
            self._in_command.discard(op.id)

    async def _validate_and_launch(
        self, op: Operation, actor: str, channel: str, source: S3Uri, output: S3Uri
    ) -> Notice:
        assert self.images is not None
        region = self.config.region
        problems: list[Problem] = []
        for bucket in dict.fromkeys([source.bucket, output.bucket]):
            bucket_region = await self.images.bucket_region(bucket)
            if region and bucket_region != region:
                problems.append(
                    Problem(
                        f"Bucket `{bucket}` is in {bucket_region}, but the bot's Rekognition "
                        f"project is in {region}: Rekognition only reads buckets in its own "
                        "region. Copy the images to a bucket there."
                    )
                )
        if problems:
            return self._refused_training(op, actor, source, problems)
        found = scan(source, await self.images.list_objects(source.bucket, source.prefix))
        problems = layout_problems(found, self.config.min_images_per_label)
        if problems:
            return self._refused_training(op, actor, source, problems)
        headers = await self.images.probe(source.bucket, [i.key for i in found.images])
        problems = image_problems(found, headers)
        if problems:
            return self._refused_training(op, actor, source, problems)

        now = self.clock.now()
        manifest_key = output.key("manifests", f"{op.version_name}.manifest")
        await self.images.put_text(
            output.bucket,
            manifest_key,
            manifest(source.bucket, found.images, now),
            "application/x-ndjson",
        )
        counts = {label.value: n for label, n in found.counts().items()}
        existing = await self.training.project_datasets() if self.training else []
        progress = TrainingProgress(
            version_name=op.version_name,
            source=str(source),
            counts=counts,
            phase=DATASETS,
            by=actor,
            replacing=bool(existing),
        )
        data: dict[str, Any] = {
            "manifest": [output.bucket, manifest_key],
            "counts": counts,
            "old_datasets": [d.arn for d in existing],
        }
        self.ops.update(op.id, status="PREPARING", phase=DATASETS, data=data)
        message = await self._post(channel, progress)
        if message is not None:
            self.ops.update(op.id, data={"message": [message.channel, message.ts]})
        total = sum(counts.values())
        self.audit.record(
            now, actor, "train", op.version_name, f"requested ({total} images from {source})"
        )
        log.info("lifecycle.train_requested", extra={"version": op.version_name, "images": total})
        self._ensure_watcher()
        return _reply(
            f"Training {op.version_name} from {source}: {total:,} images "
            f"({', '.join(f'{n:,} {k}' for k, n in counts.items())}), manifest written to "
            f"s3://{output.bucket}/{manifest_key}. I'll post progress in this channel.",
            "ok",
        )

    def _refused_training(
        self, op: Operation, actor: str, source: S3Uri, problems: list[Problem]
    ) -> Notice:
        summary = problems[0].title
        self.ops.finish(op.id, self.clock.now(), f"refused: {summary}")
        self.audit.record(self.clock.now(), actor, "train", op.version_name, f"refused: {summary}")
        return TrainingRefused(source=str(source), problems=problems)

    def _refuse_train(self, actor: str, target: str, reason: str) -> Notice:
        self.audit.record(self.clock.now(), actor, "train", target, f"refused: {reason}")
        return _reply(reason, "refused")

    def _training_busy(self, op: Operation, actor: str) -> Notice:
        return Busy(
            version_name=op.version_name,
            what="already training",
            note="One training at a time.",
            by=op.user,
            asker=actor,
            age_seconds=(self.clock.now() - op.started_at).total_seconds(),
            channel=op.channel,
            phase=op.phase,
        )

    def _free_name(self, snapshot: _Snapshot, now: datetime) -> str:
        base = f"{self.config.project_name or 'cxr'}.{now:%Y-%m-%d}"
        name, n = base, 1
        while snapshot.find(name) is not None or self.ops.open_for(name) is not None:
            n += 1
            name = f"{base}.{n}"
        return name

    # === permissions and the local-only mode ================================================
    def refused(self, actor: str, action: str, target: str, reason: str) -> None:
        """Record a refusal decided by the chat layer (e.g. not an admin)."""
        self.audit.record(self.clock.now(), actor, action, target or "-", f"refused: {reason}")

    def rekognition_only(self, action: str) -> Notice:
        return _reply(
            f"`/cxr {action}` manages a Rekognition Custom Labels model, and this bot runs only "
            f"its local model ({self.serving.current().describe()}). To use Rekognition, an "
            "admin sets CXR_PROJECT_ARN and AWS_REGION (see the README).",
            "refused",
        )

    # === the watcher ========================================================================
    async def resume(self) -> None:
        """At start-up: follow the operations a previous run left open, and (with a project
        but no configured version) serve whichever version is running."""
        try:
            for op in self.ops.open():
                if op.kind == TRAIN and op.phase == VALIDATING:
                    await self._interrupted(op)
            if self.config.serve_running_on_start and self.catalog is not None:
                try:
                    self._sync(_Snapshot.of(await self.catalog.versions()))
                except Exception as exc:
                    log.warning("lifecycle.discovery_failed", extra={"error": aws_error(exc)})
            if self.ops.open():
                log.info("lifecycle.resumed", extra={"operations": len(self.ops.open())})
                self._ensure_watcher(immediately=True)
        except Exception:
            log.exception("lifecycle.resume_failed")

    def _ensure_watcher(self, *, immediately: bool = False) -> None:
        if self._watcher is not None and not self._watcher.done():
            return
        self._watcher = self._spawn(self._watch(immediately), "lifecycle watcher")

    async def _watch(self, immediately: bool) -> None:
        first = True
        while self.ops.open():
            if not (first and immediately):
                self._sleeping = True
                try:
                    await self.clock.sleep(self.config.poll_seconds)
                finally:
                    self._sleeping = False
            first = False
            try:
                await self.tick()
            except Exception:
                log.exception("lifecycle.tick_failed")

    async def tick(self) -> None:
        """One poll: read the versions once, then move every open operation along."""
        ops = self.ops.open()
        if not ops or self.catalog is None:
            return
        snapshot: _Snapshot | None = None
        if any(op.kind != TRAIN or op.phase == TRAINING for op in ops):
            try:
                snapshot = _Snapshot.of(await self.catalog.versions())
            except Exception as exc:
                log.warning("lifecycle.describe_failed", extra={"error": aws_error(exc)})
        for op in ops:
            if op.id in self._in_command:
                continue  # its command is still talking to AWS
            try:
                if op.kind == TRAIN:
                    await self._step_train(op, snapshot)
                elif snapshot is not None:
                    await self._step_start_stop(op, snapshot)
            except Exception:
                log.exception("lifecycle.step_failed", extra={"op": op.id, "kind": op.kind})
        if snapshot is not None:
            self._sync(snapshot)

    async def _step_start_stop(self, op: Operation, snapshot: _Snapshot) -> None:
        version = snapshot.find(op.version_arn or op.version_name)
        now = self.clock.now()
        if version is None:
            await self._finish(
                op,
                "failed: the version no longer exists",
                (ModelStartFailed if op.kind == START else ModelStopFailed)(
                    version_name=op.version_name,
                    reason="the version no longer exists in the project",
                    by=op.user,
                ),
            )
            return
        if version.status != op.status:
            op = self.ops.update(op.id, status=version.status)
        if op.kind == START:
            await self._step_start(op, version, now)
        else:
            await self._step_stop(op, version, now)

    async def _step_start(self, op: Operation, version: ModelVersion, now: datetime) -> None:
        status = version.status
        if status == mv.STARTING:
            return
        if status == mv.RUNNING:
            low = version.min_units or op.data.get("min_units") or 1
            high = version.max_units or op.data.get("max_units")
            self.runs.open_run(version.arn, now, int(low), "bot")
            self.serving.serve(version.arn)
            await self._finish(
                op,
                "ok: RUNNING",
                ModelRunning(
                    version_name=version.name,
                    min_units=int(low),
                    max_units=high,
                    hourly_low=self.prices.hourly(int(low)),
                    hourly_high=self.prices.hourly(int(high or low)),
                    took_seconds=(now - op.started_at).total_seconds(),
                    by=op.user,
                    serving=True,
                ),
            )
            return
        if status == mv.FAILED:
            reason = version.status_message or "Rekognition gave no reason"
        elif self._patient(op):
            return
        elif op.phase == REQUESTED:
            reason = (
                "the request never reached Rekognition (the bot restarted while sending it); "
                f"run `/cxr start {version.name}` again"
            )
        else:
            reason = f"it is {status} instead of running"
        self.serving.stopped(version.arn)
        await self._finish(
            op,
            f"failed: {reason}",
            ModelStartFailed(version_name=version.name, reason=reason, by=op.user),
        )

    async def _step_stop(self, op: Operation, version: ModelVersion, now: datetime) -> None:
        status = version.status
        if status == mv.STOPPING:
            return
        if status in (mv.STOPPED, mv.TRAINING_COMPLETED):
            run = self.runs.close_run(version.arn, now) or self._last_run(version.arn, op)
            self.serving.stopped(version.arn)
            stopped_at = run.stopped_at if run and run.stopped_at else now
            await self._finish(
                op,
                "ok: STOPPED",
                ModelStopped(
                    version_name=version.name,
                    ran_seconds=(stopped_at - run.started_at).total_seconds() if run else None,
                    cost=self.prices.running_cost(run.units, run.started_at, stopped_at)
                    if run
                    else None,
                    by=op.user,
                ),
            )
            return
        if self._patient(op):
            return
        if op.phase == REQUESTED:
            reason = (
                f"the request never reached Rekognition (the bot restarted while sending it); it "
                f"is still {status}. Run `/cxr stop {version.name}` again"
            )
        else:
            reason = version.status_message or f"it is still {status}"
        await self._finish(
            op,
            f"failed: {reason}",
            ModelStopFailed(version_name=version.name, reason=reason, by=op.user),
        )

    def _patient(self, op: Operation) -> bool:
        """Tolerate a few unexpected readings (DescribeProjectVersions can lag a request)."""
        seen = int(op.data.get("unexpected", 0)) + 1
        if seen >= UNEXPECTED_READINGS:
            return False
        self.ops.update(op.id, data={"unexpected": seen})
        return True

    def _last_run(self, version_arn: str, op: Operation) -> Run | None:
        """The run a stop ended, when something else (a status, the cost guard) closed it."""
        now = self.clock.now()
        runs = [
            r
            for r in self.runs.overlapping(op.started_at - timedelta(days=400), now)
            if r.version_arn == version_arn
            and r.stopped_at is not None
            and r.stopped_at >= op.started_at
        ]
        return runs[-1] if runs else None

    # --- training, phase by phase ---------------------------------------------------------
    async def _step_train(self, op: Operation, snapshot: _Snapshot | None) -> None:
        if op.phase == VALIDATING:
            await self._interrupted(op)  # its command died with a previous run
            return
        assert self.training is not None
        if op.phase == DATASETS:
            await self._train_datasets(op)
        elif op.phase == CREATING:
            await self._train_wait(op, "CREATE", SPLITTING)
        elif op.phase == SPLITTING:
            await self._train_wait(op, "UPDATE", TRAINING)
        elif op.phase == TRAINING and snapshot is not None:
            await self._train_follow(op, snapshot)

    async def _train_datasets(self, op: Operation) -> None:
        """Delete the project's old datasets (one TRAIN and one TEST per project), then create
        the new ones: TRAIN from the manifest, TEST empty (filled by the split)."""
        assert self.training is not None
        ours = op.data.get("datasets") or {}
        current = await self.training.project_datasets()
        old = [d for d in current if d.arn not in ours.values()]
        if old:
            for dataset in old:
                if dataset.status.endswith("_IN_PROGRESS"):
                    continue  # wait: deleting, or still being created or updated
                try:
                    await self.training.delete_dataset(dataset.arn)
                except Exception as exc:
                    await self._train_failed(
                        op, f"I couldn't delete the old {dataset.type} dataset: {aws_error(exc)}"
                    )
                    return
            return
        bucket, key = op.data["manifest"]
        try:
            train = ours.get("TRAIN") or await self.training.create_dataset("TRAIN", (bucket, key))
            ours = {**ours, "TRAIN": train}
            self.ops.update(op.id, data={"datasets": ours})
            test = ours.get("TEST") or await self.training.create_dataset("TEST", None)
        except Exception as exc:
            await self._train_failed(op, f"creating the datasets failed: {aws_error(exc)}")
            return
        self.ops.update(op.id, phase=CREATING, data={"datasets": {**ours, "TEST": test}})
        await self._progress(op.id)

    async def _train_wait(self, op: Operation, action: str, next_phase: str) -> None:
        """Wait for both datasets to finish `action` (CREATE or UPDATE), then take the next
        step: split the training images (CREATE done) or train (UPDATE done)."""
        assert self.training is not None
        datasets = op.data.get("datasets") or {}
        described = [await self.training.describe_dataset(datasets[t]) for t in ("TRAIN", "TEST")]
        failed = next((d for d in described if d.status.endswith("_FAILED")), None)
        if failed is not None:
            reason = failed.status_message or failed.status
            await self._train_failed(op, f"the {failed.type} dataset failed: {reason}")
            return
        if any(d.status.endswith("_IN_PROGRESS") for d in described):
            return
        train, test = described
        if action == "CREATE":
            if train.total == 0 or train.labelled == 0:
                await self._train_failed(
                    op,
                    "Rekognition imported no labelled images from the manifest "
                    f"({train.errors or 0} entries with errors).",
                )
                return
            try:
                await self.training.distribute(train.arn, test.arn)
            except Exception as exc:
                await self._train_failed(op, f"splitting the datasets failed: {aws_error(exc)}")
                return
            detail = f"{train.labelled or train.total:,} images imported"
            if train.errors:
                detail += f" ({train.errors} with errors, skipped)"
            self.ops.update(op.id, phase=next_phase, data={"detail": detail + ".", "unexpected": 0})
            await self._progress(op.id)
            return
        if not test.total:
            if test.status == "UPDATE_COMPLETE" or not self._patient(op):
                await self._train_failed(op, "the split left the test dataset empty")
            return  # else: the split hasn't shown up yet
        self.ops.update(
            op.id,
            phase=next_phase,
            data={
                "detail": f"{train.total or 0:,} training and {test.total:,} test images.",
                "split": [train.total, test.total],
            },
        )
        await self._create_version(self.ops.get(op.id) or op)

    async def _create_version(self, op: Operation) -> None:
        assert self.training is not None and self.config.output is not None
        output = self.config.output
        try:
            arn = await self.training.create_version(
                op.version_name, output.bucket, output.key("output") + "/"
            )
        except Exception as exc:
            await self._train_failed(op, f"CreateProjectVersion failed: {aws_error(exc)}")
            return
        self.ops.update(op.id, version_arn=arn, status=mv.TRAINING_IN_PROGRESS)
        await self._progress(op.id)

    async def _train_follow(self, op: Operation, snapshot: _Snapshot) -> None:
        version = snapshot.find(op.version_arn or op.version_name)
        if version is None:
            if op.version_arn is None:  # a restart came between the split and the call
                await self._create_version(op)
            return
        if version.status != op.status:
            self.ops.update(op.id, status=version.status, version_arn=version.arn)
        if version.status == mv.TRAINING_IN_PROGRESS:
            return
        if version.status == mv.TRAINING_FAILED:
            await self._train_failed(op, version.status_message or "Rekognition gave no reason")
            return
        evaluation = Evaluation()
        if version.evaluation_summary_s3 and self.training is not None:
            try:
                evaluation = await self.training.evaluation(version.evaluation_summary_s3)
                self._evaluations[version.arn] = evaluation
            except Exception as exc:
                log.warning("lifecycle.evaluation_unreadable", extra={"error": aws_error(exc)})
        billable = version.billable_training_seconds
        f1 = version.f1 if version.f1 is not None else evaluation.f1
        split = op.data.get("split") or [None, None]
        ended = version.training_ended or self.clock.now()
        await self._finish(
            op,
            f"ok: F1 {f1:.3f}" if f1 is not None else f"ok: {version.status}",
            TrainingCompleted(
                version_name=version.name,
                f1=f1,
                labels=list(evaluation.labels),
                billable_seconds=billable,
                cost=self.prices.training_cost(billable) if billable is not None else None,
                wall_seconds=max(0.0, (ended - op.started_at).total_seconds()),
                train_images=evaluation.train_images or split[0],
                test_images=evaluation.test_images or split[1],
                by=op.user,
            ),
        )
        await self._progress(op.id, done=True)

    async def _train_failed(self, op: Operation, reason: str) -> None:
        await self._finish(
            op,
            f"failed: {reason}",
            TrainingFailed(version_name=op.version_name, reason=reason, by=op.user),
        )
        await self._progress(op.id, done=True)

    async def _interrupted(self, op: Operation) -> None:
        await self._finish(
            op,
            "failed: interrupted by a restart",
            TrainingFailed(
                version_name=op.version_name,
                reason="the bot restarted while it was checking the images, before anything "
                f"was sent to Rekognition. Run `/cxr train {op.data.get('source', '')}` again.",
                by=op.user,
            ),
        )

    async def _progress(self, op_id: int, *, done: bool = False) -> None:
        """Update the training's progress message in place."""
        op = self.ops.get(op_id)
        if op is None or not op.data.get("message"):
            return
        channel, ts = op.data["message"]
        notice = TrainingProgress(
            version_name=op.version_name,
            source=op.data.get("source", ""),
            counts=op.data.get("counts", {}),
            phase=op.phase,
            by=op.user,
            detail=op.data.get("detail", ""),
            replacing=bool(op.data.get("old_datasets")),
            done=done,
        )
        try:
            await self.outbox.update(PostedMessage(channel, ts), notice)
        except Exception as exc:
            log.info("lifecycle.progress_update_failed", extra={"error": type(exc).__name__})

    # --- shared ---------------------------------------------------------------------------
    async def _finish(self, op: Operation, result: str, notice: Notice) -> None:
        """Close the operation, record it, and post its outcome where it was asked for."""
        now = self.clock.now()
        self.ops.finish(op.id, now, result)
        self.audit.record(now, op.user, op.kind, op.version_name, result)
        log.info(
            "lifecycle.finished",
            extra={"kind": op.kind, "version": op.version_name, "result": result},
        )
        await self._post(op.channel, notice)

    async def _post(self, channel: str, notice: Notice) -> PostedMessage | None:
        """Post in `channel`; if Slack refuses (e.g. the bot was removed), in the ops channel."""
        for target in dict.fromkeys([channel, self.config.ops_channel]):
            if not target:
                continue
            try:
                return await self.outbox.post(target, notice)
            except Exception as exc:
                log.warning(
                    "lifecycle.post_failed", extra={"channel": target, "error": type(exc).__name__}
                )
        return None

    def _sync(self, snapshot: _Snapshot) -> None:
        """Keep the serving version in line with what Rekognition says. (Runs started or
        stopped outside the bot are the cost guard's to meter: it watches every version.)"""
        serving = self.serving.version_arn()
        running = [v for v in snapshot.newest_first() if v.running]
        if running and self.config.serve_running_on_start:
            if serving is None or all(v.arn != serving for v in running):
                self.serving.serve(running[0].arn)
        elif serving and any(v.arn == serving and not v.running for v in snapshot.by_name.values()):
            self.serving.stopped(serving)

    # --- tasks ----------------------------------------------------------------------------
    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def watching(self) -> bool:
        return self._watcher is not None and not self._watcher.done()

    async def settle(self, within: float = 10.0) -> None:
        """Wait until the watcher is asleep (or done) and nothing else is running (tests:
        advance a `FakeClock`, then settle, and the poll it woke has finished)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            others = [t for t in self._tasks if t is not self._watcher and not t.done()]
            if not others and (not self.watching or self._sleeping):
                return
            if loop.time() > deadline:
                raise TimeoutError("the lifecycle watcher did not settle")
            await asyncio.sleep(0.005)

    async def drain(self) -> None:
        """Wait until every operation has ended (with a real clock) and no task is left."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Stop watching (operations stay open in the database and resume on the next start)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _reply(text: str, tone: str = "info") -> LifecycleReply:
    return LifecycleReply(text=text, tone=tone)


def _ing(kind: str) -> str:
    return {TRAIN: "training", START: "starting", STOP: "stopping"}.get(kind, kind)


def _units_text(low: int, high: int | None) -> str:
    return f"{low} IU" if high is None or high == low else f"{low}–{high} IU"


def _usd(amount: float) -> str:
    from bot.core.pricing import usd

    return usd(amount)


def _duration(seconds: float) -> str:
    from bot.core.pricing import duration

    return duration(seconds)
