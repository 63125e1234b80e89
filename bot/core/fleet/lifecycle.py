"""The model lifecycle: `Lifecycle`, what `commands/` and the composition root call (status,
start, stop, train), and the operations in flight the fleet poller moves along.

A start is two steps because a running version bills by the hour: `propose_start` shows the
cost and the buttons, `confirm_start` asks Rekognition. Every start and stop (commands,
buttons, the schedule, auto-stop) claims an operation, leased to this instance while its
command talks to AWS; each poll then steps it (`decisions.operation_step`) until it runs, is
confirmed STOPPED (where the run ends) or fails. A change started elsewhere is adopted and
followed. A training's checks and phases: `bot.core.fleet.training`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from bot.core import model_versions as mv
from bot.core.clock import Clock
from bot.core.errors import AwsFailure
from bot.core.fleet import notices as n
from bot.core.fleet import training as trainings
from bot.core.fleet.arns import project_name
from bot.core.fleet.decisions import (
    STARTABLE,
    STOPPABLE,
    OperationFacts,
    Step,
    operation_step,
    tolerated,
)
from bot.core.fleet.poller import Poller, logged
from bot.core.fleet.state import START, STOP, TRAIN, TRAINING, VALIDATING, Operation, Run
from bot.core.fleet.status import StatusReport, VersionRow
from bot.core.labels import ModelInfo
from bot.core.model_versions import ModelCatalog, ModelVersion, find_version
from bot.core.ports import Notice, Outbox, PostedMessage
from bot.core.pricing import Prices
from bot.core.training_data import ImageStore, S3Uri, valid_version_name

if TYPE_CHECKING:
    from bot.core.fleet.guard import CostGuard
    from bot.core.fleet.state import Leases, Store
    from bot.core.fleet.training import Evaluation, TrainingBackend
    from bot.core.leadership import Leadership


log = logging.getLogger(__package__)  # the fleet logs as "bot.core.fleet"


class Serving(Protocol):
    """Which model the bot answers with; the lifecycle switches it when a version runs."""

    def current(self) -> ModelInfo: ...

    def version_arn(self) -> str | None: ...

    def has_fallback(self) -> bool:
        """Whether the local model answers while the Rekognition version isn't running."""

    async def serve(self, version_arn: str) -> None:
        """Answer with `version_arn` from now on (and remember it, where stored)."""

    def set_running(self, version_arn: str, running: bool) -> None:
        """`version_arn` was seen running or not: if it serves, the router knows at once."""


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

    async def serve(self, version_arn: str) -> None:
        self.switch(version_arn)

    def switch(self, version_arn: str) -> None:
        """Switch this instance's router only."""
        primary = self.router.primary
        if primary is not None and hasattr(primary, "version_arn"):
            primary.version_arn = version_arn
        else:
            self.router.primary = self.make_primary(version_arn)
        self.router.set_primary_running(True)
        log.info("serving.switched", extra={"version_arn": version_arn})

    def set_running(self, version_arn: str, running: bool) -> None:
        if self.version_arn() == version_arn:
            self.router.set_primary_running(running)


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
        return project_name(self.project_arn) if self.project_arn else ""


def newest_first(versions: Iterable[ModelVersion]) -> list[ModelVersion]:
    """The project's versions as one DescribeProjectVersions call saw them, newest first."""
    epoch = datetime.min
    return sorted(
        versions,
        key=lambda v: (v.created.replace(tzinfo=None) if v.created else epoch, v.name),
        reverse=True,
    )


OPERATION_LEASE = timedelta(minutes=2)  # renewed every 40 s while its command runs
VERSIONS_NAMED = 10  # in "there's no version …": the newest ones
STATUS_VERSIONS_SHOWN = 12
EVALUATIONS_FETCHED = 6  # per /cxr status: summary files read from S3 (then cached)
AUDIT_LINES = 5

# a start's or a stop's phases (Operation.phase)
REQUESTED = "requested"  # claimed, AWS not (yet) known to have accepted
FOLLOWING = "following"  # AWS accepted, or the change was already under way

BUSY_STATUS = {mv.STOPPING: "stopping", mv.TRAINING_IN_PROGRESS: "still-training"}  # refusals


class Lifecycle:
    """`/cxr status`, start, stop and train, and the operations they open: the poller steps
    them (`advance`) on the versions each poll reads."""

    def __init__(
        self,
        *,
        config: LifecycleConfig,
        catalog: ModelCatalog | None,
        training: TrainingBackend | None,
        images: ImageStore | None,
        store: Store,
        prices: Prices,
        outbox: Outbox,
        clock: Clock,
        serving: Serving,
        model_card: Callable[[], dict[str, Any] | None] = lambda: None,
    ) -> None:
        self.config = config
        self.catalog = catalog  # None: the local model only (no Rekognition project)
        self.training = training
        self.images = images
        self.ops = store.operations
        self.runs = store.runs
        self.audit = store.audit
        self.prices = prices
        self.outbox = outbox
        self.clock = clock
        self.serving = serving
        self.model_card = model_card  # the local model's card, for `/cxr status` without AWS
        self.evaluations: dict[str, Evaluation] = {}  # training summaries read, by version ARN
        self.in_command: set[int] = set()  # operations whose command is still running here
        self.claiming: set[str] = set()  # versions whose claim is being written here
        # Set by `join_guard` (without them: no guard, one instance): see there.
        self.guard: CostGuard | None = None
        self.leases: Leases = store.leases
        self.owner = "this-instance"
        # Alone (no cost guard), the poller runs while operations are open; `join_guard`
        # replaces it with the fleet's one poller, shared with the cost guard.
        self.poller = Poller(self)

    @property
    def rekognition(self) -> bool:
        return self.catalog is not None

    def rekognition_only(self, action: str) -> Notice:
        local = self.serving.current().describe()
        return n.Refused(reason="rekognition-only", action=action, detail=local)

    async def refused(self, actor: str, action: str, target: str, reason: str) -> None:
        """Record a refusal (e.g. not an admin, decided by the chat layer; a bad name)."""
        await self.audit.record(
            self.clock.now(), actor, action, target or "-", f"refused: {reason}"
        )

    # === /cxr status ========================================================================
    async def status(self) -> StatusReport:
        """The serving model, the versions, what is in flight, recent actions. Read-only, apart
        from keeping the serving version in line with Rekognition and caching evaluations."""
        report = StatusReport(
            serving=self.serving.current().describe(),
            operations=await self.ops.open(),
            audit=await self.audit.recent(AUDIT_LINES),
        )
        if self.catalog is None:
            report.local_card = self.model_card() or {}
            return report
        report.project = self.config.project_name
        try:
            snapshot = await self.versions()
        except Exception as exc:
            report.versions_failure = AwsFailure.of(exc)
            log.warning("status.describe_failed", extra={"error": report.versions_failure.code})
            return report
        await self.sync(snapshot)
        report.serving = self.serving.current().describe()
        serving_arn = self.serving.version_arn()
        serving = find_version(snapshot, serving_arn)
        if serving is not None and not serving.running:  # X-rays get the fallback, or nothing
            report.serving_status = serving.status
            report.fallback = self.serving.has_fallback()
        shown = snapshot[:STATUS_VERSIONS_SHOWN]
        await asyncio.gather(*(self.evaluation(v) for v in shown[:EVALUATIONS_FETCHED]))
        ops = {op.version_name: op for op in report.operations}
        report.rows = [await self._row(v, v.arn == serving_arn, ops.get(v.name)) for v in shown]
        report.hidden_versions = len(snapshot) - len(shown)
        if self.guard is not None:
            report.meter, report.zone = await self.guard.meter(), self.guard.config.zone
        report.prices = self.prices
        return report

    async def _row(self, version: ModelVersion, serving: bool, op: Operation | None) -> VersionRow:
        run = await self.runs.current(version.arn) if version.running else None
        ran, cost = self._ran(run, self.clock.now())
        evaluation = self.evaluations.get(version.arn)
        f1 = version.f1 if version.f1 is not None else (evaluation.f1 if evaluation else None)
        labels = evaluation.labels if evaluation else ()
        return VersionRow(version, f1, labels, ran, cost, serving, op)

    async def evaluation(self, version: ModelVersion) -> Evaluation | None:
        """The version's training summary: read from S3 once, then cached."""
        summary = version.evaluation_summary_s3
        if summary and self.training and version.arn not in self.evaluations:
            try:
                self.evaluations[version.arn] = await self.training.evaluation(summary)
            except Exception as exc:
                failure = AwsFailure.of(exc)
                log.info("lifecycle.evaluation_unavailable", extra={"error": failure.code})
        return self.evaluations.get(version.arn)

    # === /cxr start =========================================================================
    async def propose_start(
        self, actor: str, version: str | None, min_units: int | None, max_units: int | None
    ) -> Notice:
        """The cost of starting, to be confirmed; or why not, or what is already happening."""
        low = 1 if min_units is None else min_units
        startable = await self._startable(actor, low, max_units, version)
        if isinstance(startable, Notice):
            return startable
        chosen, snapshot = startable
        return n.StartProposal(
            version_name=chosen.name,
            version_arn=chosen.arn,
            **self._units(low, max_units),
            f1=chosen.f1,
            status=chosen.status,
            others_running=[v.name for v in snapshot if v.running and v.arn != chosen.arn],
        )

    async def confirm_start(
        self, actor: str, channel: str, version_arn: str, min_units: int, max_units: int | None
    ) -> Notice:
        """StartProjectVersion, unless the version is already starting or running."""
        low, high = min_units, max_units
        startable = await self._startable(actor, low, high, version_arn, channel)
        if isinstance(startable, Notice):
            return startable
        version = startable[0]
        units = f"{low} IU" if high in (None, low) else f"{low}–{high} IU"
        data = {"min_units": low, "max_units": high}
        refused = await self._request(START, version, actor, channel, data, f"requested ({units})")
        if refused:
            return refused
        log.info("lifecycle.start_requested", extra={"version": version.name, "units": low})
        return n.StartRequested(version_name=version.name, **self._units(low, high), by=actor)

    async def cancel_start(self, actor: str, version_name: str) -> Notice:
        await self.audit.record(self.clock.now(), actor, "start", version_name, "cancelled")
        return n.StartCancelled(version_name=version_name, by=actor)

    def _ran(self, run: Run | None, until: datetime) -> tuple[float | None, float | None]:
        """How long a run went on until `until`, and its estimated cost; unknown without one."""
        if run is None:
            return None, None
        return run.seconds(until), self.prices.running_cost(run.units, run.started_at, until)

    def _units(self, low: int, high: int | None) -> dict[str, Any]:
        """A `UnitsNotice`'s units, and the estimated cost an hour at each end."""
        hourly = self.prices.hourly
        return {
            "min_units": low,
            "max_units": high,
            "hourly_low": hourly(low),
            "hourly_high": hourly(high or low),
        }

    async def _startable(
        self, actor: str, low: int, high: int | None, wanted: str | None, channel: str | None = None
    ) -> tuple[ModelVersion, list[ModelVersion]] | Notice:
        """What both start steps check: a project, allowed units, readable versions, the version
        (chosen; when confirming from `channel`, the proposed one) and that nothing holds it.
        Returns the version and the versions read, or the reply."""
        if self.catalog is None:
            return self.rekognition_only("start")
        cap = self.config.max_units
        if low < 1 or (high is not None and high < low):
            return n.Refused(reason="bad-units")
        if max(low, high or low) > cap:
            return n.Refused(reason="over-cap", cap=cap, hourly=self.prices.hourly(cap))
        snapshot = await self.versions_or_reply()
        if isinstance(snapshot, Notice):
            return snapshot
        if channel is not None:
            chosen = find_version(snapshot, wanted) or n.Refused(reason="gone")
        else:
            chosen = self._choose_to_start(snapshot, wanted)
        if isinstance(chosen, Notice):
            return chosen
        blocker = await self._start_blocker(chosen, actor, channel)
        return blocker or (chosen, snapshot)

    def _choose_to_start(
        self, snapshot: list[ModelVersion], wanted: str | None
    ) -> ModelVersion | Notice:
        if not snapshot:
            return n.Refused(reason="no-versions")
        if wanted:
            return find_version(snapshot, wanted) or _no_such_version(snapshot, wanted)
        serving = self.serving.version_arn()
        for version in snapshot:
            if version.arn == serving and version.status in STARTABLE | STOPPABLE:
                return version
        for version in snapshot:
            if version.status in STARTABLE:
                return version
        busy = next((v for v in snapshot if v.status in STOPPABLE), None)
        return busy or n.Refused(reason="none-ready")  # busy: "already running" (the blocker)

    async def _start_blocker(
        self, version: ModelVersion, actor: str, channel: str | None
    ) -> Notice | None:
        """Why `version` can't be started now (starting elsewhere: followed, if confirmed)."""
        op = await self.ops.open_for(version.name)
        if op is not None:
            return self._already(version, op, actor)
        status, name = version.status, version.name
        if status == mv.RUNNING:
            ran, _ = self._ran(await self.runs.current(version.arn), self.clock.now())
            units = {"min_units": version.min_units or 1, "max_units": version.max_units}
            return n.Refused(reason="already-running", ran_seconds=ran, version_name=name, **units)
        if status == mv.STARTING:
            if channel is not None:
                await self._adopt(START, version, actor, channel)
            return n.Refused(reason="already-starting", posting=bool(channel), version_name=name)
        if status in BUSY_STATUS:
            return n.Refused(reason=BUSY_STATUS[status], version_name=name)
        if status == mv.TRAINING_FAILED:
            why = version.status_message
            return n.Refused(reason="failed-to-train", version_name=version.name, detail=why)
        if status not in STARTABLE:
            return n.Refused(reason="cannot-start", version_name=version.name, status=status)
        return None

    # === /cxr stop ==========================================================================
    async def stop(self, actor: str, channel: str, version: str | None = None) -> Notice:
        """StopProjectVersion on the named (or the only running) version."""
        if self.catalog is None:
            return self.rekognition_only("stop")
        snapshot = await self.versions_or_reply()
        if isinstance(snapshot, Notice):
            return snapshot
        await self.sync(snapshot)
        chosen = self._choose_to_stop(snapshot, version)
        if isinstance(chosen, Notice):
            return chosen
        name, status = chosen.name, chosen.status
        op = await self.ops.open_for(name)
        if op is not None and op.kind in (STOP, TRAIN):
            return self._already(chosen, op, actor)
        if status == mv.STOPPING:
            await self._adopt(STOP, chosen, actor, channel)
            return n.Refused(reason="already-stopping", version_name=name)
        if status not in STOPPABLE:
            return n.Refused(reason="not-running", version_name=name, status=status)
        ran, cost = self._ran(await self.runs.current(chosen.arn), self.clock.now())
        refused = await self._request(STOP, chosen, actor, channel)
        if refused:
            return refused
        log.info("lifecycle.stop_requested", extra={"version": name})
        return n.StopRequested(version_name=name, ran_seconds=ran, cost=cost, by=actor)

    def _choose_to_stop(
        self, snapshot: list[ModelVersion], wanted: str | None
    ) -> ModelVersion | Notice:
        if wanted:
            return find_version(snapshot, wanted) or _no_such_version(snapshot, wanted)
        live = [v for v in snapshot if v.status in STOPPABLE | {mv.STOPPING}]
        if not live:
            return n.Refused(reason="nothing-running")
        if len(live) > 1:
            return n.Refused(reason="several-running", names=[v.name for v in live])
        return live[0]

    # === the cost guard's starts and stops (auto-stop, Stop now, the schedule) ================
    async def request_stop(
        self, version: ModelVersion, actor: str, channel: str, report: dict[str, Any]
    ) -> n.Refusal | None:
        """The guard's stop: confirmed at STOPPED by the poller, then reported by the guard
        (`report` says how). None when under way (asked now or already); else why not."""
        op = await self.ops.open_for(version.name)
        if op is not None and op.kind == STOP:
            return None
        return await self._request(STOP, version, actor, channel, {"report": report}, None)

    async def request_start(
        self, version: ModelVersion, actor: str, channel: str, units: int, source: str
    ) -> n.Refusal | None:
        """The schedule's start, followed to RUNNING. None when under way; else why not."""
        data = {"min_units": units, "source": source, "quiet": True}
        return await self._request(START, version, actor, channel, data)

    # === shared by start and stop ===========================================================
    async def _request(
        self,
        kind: str,
        version: ModelVersion,
        actor: str,
        channel: str,
        data: dict[str, Any] | None = None,
        requested: str | None = "requested",
    ) -> n.Refusal | None:
        """Claim the operation (a stop supersedes a start in flight), then ask Rekognition to
        start (at `data`'s units) or stop. None when Rekognition accepted it (audited as
        `requested`, if given, and followed); else why not: busy, or Rekognition refused."""
        catalog = self.catalog
        assert catalog is not None
        now = self.clock.now()
        held = await self.ops.open_for(version.name) if kind == STOP else None
        if held is not None and held.kind == START:
            await self.ops.finish(held.id, now, "superseded by a stop")
        op = await self._claim(kind, version, actor, channel, REQUESTED, data)
        if op is None:
            return self._already(version, await self.ops.open_for(version.name), actor)
        async with self.commanding(op.id):
            try:
                if kind == START:
                    assert data is not None
                    low, high = data["min_units"], data.get("max_units")
                    status = await catalog.start(version.arn, low, high)
                else:
                    status = await catalog.stop(version.arn)
            except Exception as exc:
                failure = AwsFailure.of(exc)
                await self.finish(op, f"failed: {failure.code}")
                return n.RequestFailed(action=kind, version_name=version.name, failure=failure)
        await self.ops.update(op.id, status=status, phase=FOLLOWING)
        if requested is not None:
            await self.audit.record(now, actor, kind, version.name, requested)
        self.poller.follow()
        return None

    async def _adopt(self, kind: str, version: ModelVersion, actor: str, channel: str) -> None:
        """Follow a change started elsewhere (console, before a restart) to post its outcome;
        nothing to do when another operation holds the version already."""
        data = {"min_units": version.min_units or 1}
        if await self._claim(kind, version, actor, channel, FOLLOWING, data) is not None:
            self.poller.follow()

    async def _claim(
        self,
        kind: str,
        version: ModelVersion,
        actor: str,
        channel: str,
        phase: str,
        data: dict[str, Any] | None,
    ) -> Operation | None:
        """Open the version's one operation, or None when another holds it."""
        return await self.ops.claim(
            kind,
            version.name,
            version_arn=version.arn,
            channel=channel,
            user=actor,
            at=self.clock.now(),
            status=version.status,
            phase=phase,
            data=data,
        )

    def _already(self, version: ModelVersion, op: Operation | None, actor: str) -> n.Refusal:
        if op is None:  # the operation that held it ended meanwhile
            return n.Refused(reason="busy", version_name=version.name)
        return self._busy(op, actor)

    def _busy(self, op: Operation, asker: str, **more: Any) -> n.Busy:
        """Say what `op` is doing, for whom and since when, instead of asking AWS again."""
        return n.Busy(
            version_name=op.version_name,
            kind=op.kind,
            by=op.user,
            asker=asker,
            age_seconds=(self.clock.now() - op.started_at).total_seconds(),
            channel=op.channel,
            **more,
        )

    # === /cxr train =========================================================================
    async def train(
        self, actor: str, channel: str, source_text: str, version_name: str | None = None
    ) -> Notice:
        """Claim the training, then check the images and set it going (`training.launch`).
        The checks read every image's header, which takes a while for thousands of images, so
        the caller has acknowledged the command already."""
        if self.catalog is None or self.training is None or self.images is None:
            return self.rekognition_only("train")
        try:
            source = S3Uri.parse(source_text)
        except ValueError as exc:
            return n.Refused(reason="bad-source", detail=str(exc))
        output = self.config.output
        if output is None:
            return n.Refused(reason="no-output")
        busy = await self.ops.open_training()
        if busy is not None:
            return self._training_busy(busy, actor)
        if version_name is not None and not valid_version_name(version_name):
            await self.refused(actor, TRAIN, version_name, "bad-name")
            return n.Refused(reason="bad-name", wanted=version_name)
        snapshot = await self.versions_or_reply()
        if isinstance(snapshot, Notice):
            return snapshot
        other = next((v for v in snapshot if v.status == mv.TRAINING_IN_PROGRESS), None)
        if other is not None:
            return n.Refused(reason="training-elsewhere", version_name=other.name)
        now = self.clock.now()
        if version_name is None:
            version_name = await self._free_name(snapshot, now)
        elif find_version(snapshot, version_name) is not None:
            await self.refused(actor, TRAIN, version_name, "name-taken")
            return n.Refused(reason="name-taken", wanted=version_name)
        self.claiming.add(version_name)
        try:
            op = await self.ops.claim(
                TRAIN,
                version_name,
                channel=channel,
                user=actor,
                at=now,
                status="VALIDATING",
                phase=VALIDATING,
                data={"source": str(source)},
            )
        finally:  # no await from here to `commanding`, which marks the claimed operation
            self.claiming.discard(version_name)
        if op is None:
            busy = await self.ops.open_training() or await self.ops.open_for(version_name)
            if busy is not None:
                return self._training_busy(busy, actor)
            return n.Refused(reason="name-in-use")
        async with self.commanding(op.id):
            try:
                return await trainings.launch(self, op, source, output)
            except Exception as exc:
                failure = AwsFailure.of(exc)
                await self.finish(op, f"failed: {failure.code}")
                return n.SourceUnreadable(source=str(source), failure=failure)

    def _training_busy(self, op: Operation, actor: str) -> Notice:
        return self._busy(op, actor, asked=TRAIN, phase=op.phase)

    async def _free_name(self, snapshot: list[ModelVersion], now: datetime) -> str:
        base = f"{self.config.project_name or 'cxr'}.{now:%Y-%m-%d}"
        name, number = base, 1
        while find_version(snapshot, name) is not None or await self.ops.open_for(name) is not None:
            number += 1
            name = f"{base}.{number}"
        return name

    # === operations in flight: the poller's side ============================================
    async def open_count(self) -> int:
        return len(await self.ops.open())

    async def needs_versions(self) -> bool:
        return any(op.kind != TRAIN or op.phase == TRAINING for op in await self.ops.open())

    async def prepare(self) -> None:
        """At start-up: close what a restart cut short, and (with a project but no configured
        version) serve whichever version is running."""
        for op in await self.ops.open():
            if await self.commanded(op):
                continue  # checking its images right now, here or on another instance
            if op.kind == TRAIN and op.phase == VALIDATING:
                await trainings.interrupted(self, op)
        if self.config.serve_running_on_start and self.catalog is not None:
            try:
                await self.sync(await self.versions())
            except Exception as exc:
                failure = AwsFailure.of(exc)
                log.warning("lifecycle.discovery_failed", extra={"error": failure.code})
        if open_ops := await self.ops.open():
            log.info("lifecycle.resumed", extra={"operations": len(open_ops)})

    async def advance(self, versions: list[ModelVersion] | None) -> None:
        """One poll's worth: move every open operation along on the versions just read."""
        ops = await self.ops.open()
        if self.catalog is None:
            return
        snapshot = newest_first(versions) if versions is not None else None
        for op in ops:
            if await self.commanded(op):
                continue  # its command (here or on another instance) is still talking to AWS
            try:
                if op.kind == TRAIN:
                    await trainings.step(self, op, snapshot)
                elif snapshot is not None:
                    await self._step(op, snapshot)
            except Exception:
                log.exception("lifecycle.step_failed", extra={"op": op.id, "kind": op.kind})
        if snapshot is not None:
            await self.sync(snapshot)

    async def _step(self, op: Operation, snapshot: list[ModelVersion]) -> None:
        """Move a start or a stop along from what Rekognition says now."""
        version = find_version(snapshot, op.version_arn or op.version_name)
        now = self.clock.now()
        if version is not None and version.status != op.status:
            op = await self.ops.update(op.id, status=version.status)
        unexpected = int(op.data.get("unexpected", 0))
        step = operation_step(
            OperationFacts(
                kind=op.kind,
                status=version.status if version else None,
                requested=op.phase == REQUESTED,
                unexpected_seen=unexpected,
                age=now - op.started_at,
                slow_reported=bool(op.data.get("slow")),
            )
        )
        if step is Step.WAIT:
            return
        if step is Step.TOLERATE:
            await self.ops.update(op.id, data={"unexpected": unexpected + 1})
        elif version is None:
            await self._failed(op, None, "gone")
        elif step is Step.RUNNING:
            await self._running(op, version, now)
        elif step is Step.STOPPED:
            await self._stopped(op, version, now)
        elif step is Step.SLOW:
            await self.ops.update(op.id, data={"slow": True})
            await self._failed(op, version, "slow", final=False)
        else:
            await self._failed(op, version, _failure(op, version, step))

    async def _running(self, op: Operation, version: ModelVersion, now: datetime) -> None:
        low = int(version.min_units or op.data.get("min_units") or 1)
        high = version.max_units or op.data.get("max_units")
        await self.runs.open_run(version.arn, now, low, op.data.get("source", "bot"))
        await self.serving.serve(version.arn)
        took, units = (now - op.started_at).total_seconds(), self._units(low, high)
        running = n.ModelRunning(version_name=version.name, **units, took_seconds=took, by=op.user)
        quiet = op.data.get("quiet")  # the schedule announced it: audited, not posted again
        await self.finish(op, "ok: RUNNING", None if quiet else running)

    async def _stopped(self, op: Operation, version: ModelVersion, now: datetime) -> None:
        """Confirmed at STOPPED: the run ends here (a STOPPING model is still billed)."""
        run = await self.runs.close_run(version.arn, now)
        run = run or await self.runs.latest(version.arn, op.started_at)
        self.serving.set_running(version.arn, False)
        report = op.data.get("report")
        if report is not None and self.guard is not None:
            await self.finish(op, report.get("result", "ok: STOPPED"))
            await self.guard.stopped(op, run, now)
            return
        ran, cost = self._ran(run, run.stopped_at if run and run.stopped_at else now)
        stopped = n.ModelStopped(version_name=version.name, ran_seconds=ran, cost=cost, by=op.user)
        await self.finish(op, "ok: STOPPED", stopped)

    async def _failed(
        self,
        op: Operation,
        version: ModelVersion | None,
        reason: n.FailureReason,
        *,
        final: bool = True,
    ) -> None:
        """Say why the start or stop failed (or, not `final`, is slow) where it was asked."""
        kind = n.ModelStartFailed if op.kind == START else n.ModelStopFailed
        failed = kind(
            version_name=op.version_name,
            reason=reason,
            status=version.status if version else "",
            detail=version.status_message if version and reason == "rekognition" else "",
            by=op.user,
        )
        if isinstance(failed, n.ModelStartFailed):
            if version is not None:
                self.serving.set_running(version.arn, False)
            await self.finish(op, failed.result, failed)
        elif op.data.get("report") is not None and self.guard is not None:
            if final:
                await self.finish(op, failed.result)
            await self.guard.not_stopped(op, failed)
        elif final:
            await self.finish(op, failed.result, failed)
        else:
            await self.post(op.channel, failed)

    # === shared by every operation ==========================================================
    async def versions(self) -> list[ModelVersion]:
        """The project's versions, newest first."""
        assert self.catalog is not None
        return newest_first(await self.catalog.versions())

    async def versions_or_reply(self) -> list[ModelVersion] | n.VersionsUnreadable:
        """The versions, or the reply a command gives when Rekognition can't be read."""
        try:
            return await self.versions()
        except Exception as exc:
            return n.VersionsUnreadable(failure=AwsFailure.of(exc))

    @asynccontextmanager
    async def commanding(self, op_id: int) -> AsyncIterator[None]:
        """While the command that claimed `op_id` talks to AWS, the poller (on any instance)
        leaves it alone: the operation is leased to this instance, renewed until done."""
        self.in_command.add(op_id)
        key = f"operation:{op_id}"
        await self.leases.acquire(key, self.owner, self.clock.now(), OPERATION_LEASE)
        renewing = asyncio.create_task(self._renew(key), name="operation lease")
        try:
            yield
        finally:
            self.in_command.discard(op_id)
            renewing.cancel()
            await self.leases.release([key], self.owner)

    async def _renew(self, key: str) -> None:
        while True:
            await self.clock.sleep(OPERATION_LEASE.total_seconds() / 3)
            await self.leases.acquire(key, self.owner, self.clock.now(), OPERATION_LEASE)

    async def commanded(self, op: Operation) -> bool:
        """A command holds `op`: on this instance (or it is writing the claim, which commits on
        the database's thread before the command resumes and enters `commanding`), or on
        another one, whose lease hasn't lapsed."""
        if op.id in self.in_command or op.version_name in self.claiming:
            return True
        lease = await self.leases.holder(f"operation:{op.id}")
        return (
            lease is not None and lease.owner != self.owner and not lease.expired(self.clock.now())
        )

    async def patient(self, op: Operation) -> bool:
        """Tolerate a few unexpected readings (DescribeProjectVersions can lag a request)."""
        seen = int(op.data.get("unexpected", 0))
        if not tolerated(seen):
            return False
        await self.ops.update(op.id, data={"unexpected": seen + 1})
        return True

    async def finish(self, op: Operation, result: str, outcome: Notice | None = None) -> None:
        """Close the operation, record it, and post its `outcome` where it was asked for
        (without one, the outcome is someone else's to post)."""
        now = self.clock.now()
        await self.ops.finish(op.id, now, result)
        await self.audit.record(now, op.user, op.kind, op.version_name, result)
        log.info(
            "lifecycle.finished",
            extra={"kind": op.kind, "version": op.version_name, "result": result},
        )
        if outcome is not None:
            await self.post(op.channel, outcome)

    async def post(self, channel: str, notice: Notice) -> PostedMessage | None:
        """Post in `channel`; if Slack refuses (e.g. the bot was removed), in the ops channel."""
        for target in dict.fromkeys([channel, self.config.ops_channel]):
            if not target:
                continue
            try:
                return await self.outbox.post(target, notice)
            except Exception as exc:
                error = type(exc).__name__
                log.warning("lifecycle.post_failed", extra={"channel": target, "error": error})
        return None

    async def sync(self, snapshot: list[ModelVersion]) -> None:
        """Keep the serving version in line with what Rekognition says. (Runs started or
        stopped outside the bot are the cost guard's to meter: it watches every version.)"""
        serving = self.serving.version_arn()
        running = [v for v in snapshot if v.running]
        if running and self.config.serve_running_on_start:
            if serving is None or all(v.arn != serving for v in running):
                await self.serving.serve(running[0].arn)
        elif serving and any(v.arn == serving and not v.running for v in snapshot):
            self.serving.set_running(serving, False)

    # === the poller =========================================================================
    async def resume(self) -> None:
        """At start-up: pick up what a previous run left open, and follow it."""
        await logged(self.prepare(), "lifecycle.resume_failed")
        if await self.ops.open():
            self.poller.follow(immediately=True)

    @property
    def watching(self) -> bool:
        return self.poller.running

    async def settle(self, within: float = 10.0) -> None:
        """Tests: wait until the poll a `FakeClock` advance woke has finished."""
        await self.poller.settle(within)

    async def drain(self) -> None:
        """Wait until every operation has ended and no task is left."""
        await self.poller.drain()

    async def close(self) -> None:
        """Stop watching; open operations resume on the next start."""
        await self.poller.close()

    def join_guard(
        self,
        guard: CostGuard,
        *,
        owner: str,
        leader: Leadership | None = None,
    ) -> Poller:
        """One fleet: the guard's stops are reported by it when confirmed, its meter shows in
        `/cxr status`, an operation is leased to `owner` while its command talks to AWS (every
        instance's poller leaves it alone), and one poller serves operations and guard, every
        guard interval when nothing is in flight. With `leader` (replicas on one database) only
        the leader's poller acts. Returns that poller, the bot's background job."""
        self.guard = guard
        self.owner = owner
        idle_seconds = guard.config.interval.total_seconds()
        self.poller = Poller(self, guard, idle_seconds, leader)
        return self.poller


def _no_such_version(snapshot: list[ModelVersion], wanted: str) -> n.Refused:
    names = [v.name for v in snapshot[:VERSIONS_NAMED]]
    return n.Refused(reason="no-such-version", wanted=wanted, names=names)


def _failure(op: Operation, version: ModelVersion, step: Step) -> n.FailureReason:
    """Why a start or a stop failed."""
    if step is Step.NEVER_SENT:
        return "never-sent"
    if op.kind == START:
        return (
            "rekognition" if step is Step.FAILED and version.status == "FAILED" else "not-running"
        )
    return "rekognition" if version.status_message else "not-stopped"
