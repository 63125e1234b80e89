"""The model lifecycle: `Lifecycle`, the API `commands/` and the composition root call (status,
start, stop, train), its shared context and ports, the one start path and the one stop path,
and `InFlight`, the operations the fleet poller moves along on each poll's versions.

A start is two steps because a running version bills by the hour: `propose_start` shows the
cost and the Start / Cancel buttons, `confirm_start` asks Rekognition; both refuse early
without an AWS call that changes anything. Every start and stop (commands, buttons, the
schedule, auto-stop) claims an operation, leases it to this instance while its command talks
to AWS, then asks Rekognition; each poll then steps it (`decisions.operation_step`): running,
stopped (confirmed at STOPPED, where the run ends), or failed with the reason. A change
started elsewhere is adopted and followed. `Lifecycle.join_guard` makes the lifecycle and the
cost guard one fleet with one poller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from bot.core import model_versions as mv
from bot.core.clock import Clock
from bot.core.errors import UserFacingError
from bot.core.fleet.arns import project_name
from bot.core.fleet.decisions import (
    SLOW_STOP,
    STARTABLE,
    STOPPABLE,
    UNEXPECTED_READINGS,
    OperationFacts,
    Step,
    operation_step,
)
from bot.core.fleet.notices import (
    Busy,
    LifecycleReply,
    ModelRunning,
    ModelStartFailed,
    ModelStopFailed,
    ModelStopped,
    Refused,
    RequestFailed,
    StartCancelled,
    StartProposal,
    StartRequested,
    StopRequested,
    VersionsUnreadable,
)
from bot.core.fleet.poller import Leader, Poller
from bot.core.fleet.state import (
    START,
    STOP,
    TRAIN,
    TRAINING,
    VALIDATING,
    Audit,
    Leases,
    Operation,
    Operations,
    Run,
    Runs,
    Store,
)
from bot.core.labels import ModelInfo
from bot.core.model_versions import ModelCatalog, ModelVersion
from bot.core.ports import Notice, Outbox, PostedMessage
from bot.core.pricing import Prices, duration
from bot.core.training_data import ImageStore, S3Uri

if TYPE_CHECKING:  # (training and status import this module: they are imported when used)
    from bot.core.fleet.guard import CostGuard
    from bot.core.fleet.status import StatusReport
    from bot.core.fleet.training import Evaluation, TrainingBackend, TrainingPhases


log = logging.getLogger(__package__)  # the fleet logs as "bot.core.fleet"


class Serving(Protocol):
    """Which model the bot answers with; the lifecycle switches it when a version runs."""

    def current(self) -> ModelInfo: ...

    def version_arn(self) -> str | None: ...

    def has_fallback(self) -> bool:
        """Whether the local model answers while the Rekognition version isn't running."""
        ...

    async def serve(self, version_arn: str) -> None:
        """Answer with `version_arn` from now on (and remember it, where stored)."""
        ...

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
        return project_name(self.project_arn)


OPERATION_LEASE = timedelta(minutes=2)  # renewed every 40 s while its command runs


class GuardStops(Protocol):
    """Where a stop the cost guard asked for is reported (in its alert's thread)."""

    async def stopped(self, op: Operation, run: Run | None, now: datetime) -> None: ...
    async def not_stopped(self, op: Operation, reason: str) -> None: ...


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


def reply(text: str, tone: str = "info") -> LifecycleReply:
    return LifecycleReply(text=text, tone=tone)


@dataclass
class VersionSnapshot:
    """The project's versions as one DescribeProjectVersions call saw them, by name."""

    by_name: dict[str, ModelVersion] = field(default_factory=dict)

    @classmethod
    def of(cls, versions: Sequence[ModelVersion]) -> VersionSnapshot:
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


@dataclass
class LifecycleContext:
    config: LifecycleConfig
    catalog: ModelCatalog | None  # None: the local model only (no Rekognition project)
    training: TrainingBackend | None
    images: ImageStore | None
    ops: Operations
    runs: Runs
    audit: Audit
    prices: Prices
    outbox: Outbox
    clock: Clock
    serving: Serving
    model_card: Callable[[], dict[str, Any] | None]
    # Lines from the cost guard's meter (idle time, snooze, auto-stop) for /cxr status.
    meter: Callable[[], Awaitable[list[str]]] = field(default=lambda: _no_lines())
    # The cost guard, told when one of its stops is confirmed or doesn't take effect.
    guard_stops: GuardStops | None = None
    evaluations: dict[str, Evaluation] = field(default_factory=dict)  # by version ARN
    in_command: set[int] = field(default_factory=set)  # ops whose command is still running here
    claiming: set[str] = field(default_factory=set)  # versions whose claim is being written
    # Operation leases: while a command (on any instance) talks to AWS, its operation is
    # leased to that instance and the poller leaves it alone; None: one instance only.
    leases: Leases | None = None
    owner: str = "this-instance"

    # --- reading Rekognition --------------------------------------------------------------
    async def versions(self) -> VersionSnapshot:
        assert self.catalog is not None
        return VersionSnapshot.of(await self.catalog.versions())

    async def versions_or_reply(self) -> VersionSnapshot | VersionsUnreadable:
        """The versions, or the reply a command gives when Rekognition can't be read."""
        try:
            return await self.versions()
        except Exception as exc:
            return VersionsUnreadable(error=aws_error(exc))

    def rekognition_only(self, action: str) -> Notice:
        local = self.serving.current().describe()
        return Refused(reason="rekognition-only", action=action, detail=local)

    # --- operations -----------------------------------------------------------------------
    def commanded_here(self, op: Operation) -> bool:
        """A command on this instance holds `op`, or is writing its claim: the claim commits on
        the database's thread before the command resumes and enters `commanding`."""
        return op.id in self.in_command or op.version_name in self.claiming

    @asynccontextmanager
    async def commanding(self, op_id: int) -> AsyncIterator[None]:
        """While the command that claimed `op_id` talks to AWS, the poller (on any instance)
        leaves it alone: the operation is leased to this instance, renewed until done."""
        self.in_command.add(op_id)
        key = f"operation:{op_id}"
        renewing: asyncio.Task[None] | None = None
        if self.leases is not None:
            await self.leases.acquire(key, self.owner, self.clock.now(), OPERATION_LEASE)
            renewing = asyncio.create_task(self._renew(key), name="operation lease")
        try:
            yield
        finally:
            self.in_command.discard(op_id)
            if renewing is not None:
                renewing.cancel()
            if self.leases is not None:
                await self.leases.release([key], self.owner)

    async def _renew(self, key: str) -> None:
        assert self.leases is not None
        while True:
            await self.clock.sleep(OPERATION_LEASE.total_seconds() / 3)
            await self.leases.acquire(key, self.owner, self.clock.now(), OPERATION_LEASE)

    async def commanded_elsewhere(self, op: Operation) -> bool:
        """Whether another instance's command still holds the operation."""
        if self.leases is None:
            return False
        lease = await self.leases.holder(f"operation:{op.id}")
        return (
            lease is not None and lease.owner != self.owner and not lease.expired(self.clock.now())
        )

    def busy(self, op: Operation, asker: str, what: str, **more: Any) -> Busy:
        """Say what `op` is doing, for whom and since when, instead of asking AWS again."""
        return Busy(
            version_name=op.version_name,
            what=what,
            by=op.user,
            asker=asker,
            age_seconds=(self.clock.now() - op.started_at).total_seconds(),
            channel=op.channel,
            **more,
        )

    async def patient(self, op: Operation) -> bool:
        """Tolerate a few unexpected readings (DescribeProjectVersions can lag a request)."""
        seen = int(op.data.get("unexpected", 0)) + 1
        if seen >= UNEXPECTED_READINGS:
            return False
        await self.ops.update(op.id, data={"unexpected": seen})
        return True

    async def finish_quietly(self, op: Operation, result: str) -> None:
        """Close and audit the operation; its outcome is someone else's to post."""
        now = self.clock.now()
        await self.ops.finish(op.id, now, result)
        await self.audit.record(now, op.user, op.kind, op.version_name, result)

    async def finish(self, op: Operation, result: str, notice: Notice) -> None:
        """Close the operation, record it, and post its outcome where it was asked for."""
        now = self.clock.now()
        await self.ops.finish(op.id, now, result)
        await self.audit.record(now, op.user, op.kind, op.version_name, result)
        log.info(
            "lifecycle.finished",
            extra={"kind": op.kind, "version": op.version_name, "result": result},
        )
        await self.post(op.channel, notice)

    async def post(self, channel: str, notice: Notice) -> PostedMessage | None:
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

    # --- serving --------------------------------------------------------------------------
    async def sync(self, snapshot: VersionSnapshot) -> None:
        """Keep the serving version in line with what Rekognition says. (Runs started or
        stopped outside the bot are the cost guard's to meter: it watches every version.)"""
        serving = self.serving.version_arn()
        running = [v for v in snapshot.newest_first() if v.running]
        if running and self.config.serve_running_on_start:
            if serving is None or all(v.arn != serving for v in running):
                await self.serving.serve(running[0].arn)
        elif serving and any(v.arn == serving and not v.running for v in snapshot.by_name.values()):
            self.serving.stopped(serving)


async def _no_lines() -> list[str]:
    return []


VERSIONS_NAMED = 10  # in "there's no version …": the newest ones

# a start's or a stop's phases (Operation.phase)
REQUESTED = "requested"  # claimed, AWS not (yet) known to have accepted
FOLLOWING = "following"  # AWS accepted, or the change was already under way

BUSY_WITH = {START: "already starting", STOP: "stopping", TRAIN: "still training"}


class StartStopCommands:
    def __init__(self, ctx: LifecycleContext, follow: Callable[[], None]) -> None:
        self.ctx = ctx
        self.follow = follow  # make sure the poller follows the operations now open

    # === /cxr start =========================================================================
    async def propose_start(
        self, actor: str, version: str | None, min_units: int | None, max_units: int | None
    ) -> Notice:
        """The cost of starting, to be confirmed; or why not, or what is already happening."""
        checked = await self._start_checks(min_units, max_units)
        if isinstance(checked, Notice):
            return checked
        low, high, snapshot = checked
        chosen = self._choose_to_start(snapshot, version)
        if isinstance(chosen, Notice):
            return chosen
        blocker = await self._start_blocker(chosen, actor)
        if blocker:
            return blocker
        others = [v.name for v in snapshot.by_name.values() if v.running and v.arn != chosen.arn]
        return StartProposal(
            version_name=chosen.name,
            version_arn=chosen.arn,
            min_units=low,
            max_units=high,
            **hourly_fields(self.ctx.prices, low, high or low),
            f1=chosen.f1,
            status=chosen.status,
            others_running=others,
        )

    async def confirm_start(
        self, actor: str, channel: str, version_arn: str, min_units: int, max_units: int | None
    ) -> Notice:
        """StartProjectVersion, unless the version is already starting or running."""
        checked = await self._start_checks(min_units, max_units)
        if isinstance(checked, Notice):
            return checked
        low, high, snapshot = checked
        version = snapshot.find(version_arn)
        if version is None:
            return Refused(reason="gone")
        blocker = await self._start_blocker(version, actor, channel)
        if blocker:
            return blocker
        catalog = self.ctx.catalog
        assert catalog is not None
        refused = await self._request(
            START,
            version,
            actor,
            channel,
            self.ctx.clock.now(),
            lambda: catalog.start(version.arn, low, high),
            data={"min_units": low, "max_units": high},
            requested=f"requested ({_units_text(low, high)})",
        )
        if refused:
            return refused
        log.info("lifecycle.start_requested", extra={"version": version.name, "units": low})
        self.follow()
        return StartRequested(
            version_name=version.name,
            min_units=low,
            max_units=high,
            **hourly_fields(self.ctx.prices, low, high or low),
            by=actor,
        )

    async def cancel_start(self, actor: str, version_name: str) -> Notice:
        await self.ctx.audit.record(self.ctx.clock.now(), actor, "start", version_name, "cancelled")
        return StartCancelled(version_name=version_name, by=actor)

    async def _start_checks(
        self, min_units: int | None, max_units: int | None
    ) -> tuple[int, int | None, VersionSnapshot] | Notice:
        """What both start steps check first: a project, allowed units, readable versions."""
        if self.ctx.catalog is None:
            return self.ctx.rekognition_only("start")
        low, high, refusal = self._units(min_units, max_units)
        if refusal:
            return refusal
        snapshot = await self.ctx.versions_or_reply()
        if isinstance(snapshot, Notice):
            return snapshot
        return low, high, snapshot

    def _units(
        self, min_units: int | None, max_units: int | None
    ) -> tuple[int, int | None, Notice | None]:
        low = 1 if min_units is None else min_units
        high = max_units
        cap = self.ctx.config.max_units
        if low < 1 or (high is not None and high < low):
            return (
                low,
                high,
                Refused(reason="bad-units", min_units=low, max_units=high),
            )
        if max(low, high or low) > cap:
            return (
                low,
                high,
                Refused(reason="over-cap", cap=cap, hourly=self.ctx.prices.hourly(cap)),
            )
        return low, high, None

    def _choose_to_start(
        self, snapshot: VersionSnapshot, wanted: str | None
    ) -> ModelVersion | Notice:
        if not snapshot.by_name:
            return Refused(reason="no-versions")
        if wanted:
            return snapshot.find(wanted) or _no_such_version(snapshot, wanted)
        serving = self.ctx.serving.version_arn()
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
        return Refused(reason="none-ready")

    async def _start_blocker(
        self, version: ModelVersion, actor: str, channel: str | None = None
    ) -> Notice | None:
        op = await self.ctx.ops.open_for(version.name)
        if op is not None:
            return self._already(version, op, actor)
        status = version.status
        if status == mv.RUNNING:
            run = await self.ctx.runs.current(version.arn)
            return Refused(
                reason="already-running",
                tone="busy",
                version_name=version.name,
                min_units=version.min_units or 1,
                max_units=version.max_units,
                ran_seconds=run.seconds(self.ctx.clock.now()) if run else None,
            )
        if status == mv.STARTING:
            if channel is not None:
                await self._adopt(START, version, actor, channel)
            posting = bool(channel)
            return Refused(
                reason="already-starting", tone="busy", version_name=version.name, posting=posting
            )
        if status == mv.STOPPING:
            return Refused(reason="stopping", tone="busy", version_name=version.name)
        if status == mv.TRAINING_IN_PROGRESS:
            return Refused(reason="still-training", tone="busy", version_name=version.name)
        if status == mv.TRAINING_FAILED:
            reason = version.status_message or ""
            return Refused(reason="failed-to-train", version_name=version.name, detail=reason)
        if status not in STARTABLE:
            return Refused(reason="cannot-start", version_name=version.name, status=status)
        return None

    # === /cxr stop ==========================================================================
    async def stop(self, actor: str, channel: str, version: str | None = None) -> Notice:
        """StopProjectVersion on the named (or the only running) version."""
        ctx = self.ctx
        if ctx.catalog is None:
            return ctx.rekognition_only("stop")
        snapshot = await ctx.versions_or_reply()
        if isinstance(snapshot, Notice):
            return snapshot
        now = ctx.clock.now()
        await ctx.sync(snapshot)
        chosen = self._choose_to_stop(snapshot, version)
        if isinstance(chosen, Notice):
            return chosen
        op = await ctx.ops.open_for(chosen.name)
        if op is not None and op.kind in (STOP, TRAIN):
            return self._already(chosen, op, actor)
        if chosen.status == mv.STOPPING:
            await self._adopt(STOP, chosen, actor, channel)
            return Refused(reason="already-stopping", tone="busy", version_name=chosen.name)
        if chosen.status not in STOPPABLE:
            return Refused(
                reason="not-running", tone="busy", version_name=chosen.name, status=chosen.status
            )
        if op is not None:  # a start in flight: the stop takes over
            await ctx.ops.finish(op.id, now, "superseded by a stop")
        run = await ctx.runs.current(chosen.arn)
        catalog = ctx.catalog
        refused = await self._request(
            STOP, chosen, actor, channel, now, lambda: catalog.stop(chosen.arn)
        )
        if refused:
            return refused
        log.info("lifecycle.stop_requested", extra={"version": chosen.name})
        self.follow()
        return StopRequested(
            version_name=chosen.name,
            ran_seconds=run.seconds(now) if run else None,
            cost=ctx.prices.running_cost(run.units, run.started_at, now) if run else None,
            by=actor,
        )

    def _choose_to_stop(
        self, snapshot: VersionSnapshot, wanted: str | None
    ) -> ModelVersion | Notice:
        if wanted:
            return snapshot.find(wanted) or _no_such_version(snapshot, wanted)
        live = [v for v in snapshot.newest_first() if v.status in STOPPABLE | {mv.STOPPING}]
        if not live:
            return Refused(reason="nothing-running", tone="busy")
        if len(live) > 1:
            return Refused(reason="several-running", names=[v.name for v in live])
        return live[0]

    # === the cost guard's starts and stops (auto-stop, Stop now, the schedule) ================
    async def request_stop(
        self, version: ModelVersion, actor: str, channel: str, report: dict[str, Any]
    ) -> str | None:
        """The one stop path, for the guard: claim a stop operation and ask Rekognition; the
        poller confirms it at STOPPED and the guard reports it then (`report` says how).
        None when the stop is under way (asked now or already); else Rekognition's error."""
        ctx = self.ctx
        assert ctx.catalog is not None
        catalog = ctx.catalog
        now = ctx.clock.now()
        op = await ctx.ops.open_for(version.name)
        if op is not None and op.kind == STOP:
            return None
        if op is not None and op.kind == START:
            await ctx.ops.finish(op.id, now, "superseded by a stop")
        refused = await self._request(
            STOP,
            version,
            actor,
            channel,
            now,
            lambda: catalog.stop(version.arn),
            data={"report": report},
            requested=None,
        )
        if refused is None:
            self.follow()
            return None
        return _reason(refused)

    async def request_start(
        self, version: ModelVersion, actor: str, channel: str, units: int, source: str
    ) -> str | None:
        """The one start path, for the schedule: claim a start operation and ask Rekognition;
        the poller follows it to RUNNING. None when under way; else the error."""
        ctx = self.ctx
        assert ctx.catalog is not None
        catalog = ctx.catalog
        refused = await self._request(
            START,
            version,
            actor,
            channel,
            ctx.clock.now(),
            lambda: catalog.start(version.arn, units, None),
            data={"min_units": units, "source": source, "quiet": True},
        )
        if refused is None:
            self.follow()
            return None
        return _reason(refused)

    # === shared by start and stop ===========================================================
    async def _request(
        self,
        kind: str,
        version: ModelVersion,
        actor: str,
        channel: str,
        now: datetime,
        call: Callable[[], Awaitable[str]],
        *,
        data: dict[str, Any] | None = None,
        requested: str | None = "requested",
    ) -> Notice | None:
        """Claim the operation, then ask Rekognition for the change (`call` returns the new
        status). None when Rekognition accepted it (recorded, and to be followed); else what
        to reply: it is already busy, or why Rekognition refused."""
        ctx = self.ctx
        op = await self._claim(kind, version, actor, channel, now, REQUESTED, data)
        if op is None:
            return self._already(version, await ctx.ops.open_for(version.name), actor)
        async with ctx.commanding(op.id):
            try:
                status = await call()
            except Exception as exc:
                reason = aws_error(exc)
                await ctx.ops.finish(op.id, ctx.clock.now(), f"failed: {reason}")
                await ctx.audit.record(now, actor, kind, version.name, f"failed: {reason}")
                return RequestFailed(action=kind, version_name=version.name, error=reason)
        await ctx.ops.update(op.id, status=status, phase=FOLLOWING)
        if requested is not None:
            await ctx.audit.record(now, actor, kind, version.name, requested)
        return None

    async def _adopt(self, kind: str, version: ModelVersion, actor: str, channel: str) -> None:
        """Follow a change started elsewhere (console, before a restart) to post its outcome."""
        data = {"adopted": True, "min_units": version.min_units or 1}
        op = await self._claim(kind, version, actor, channel, self.ctx.clock.now(), FOLLOWING, data)
        if op is not None:
            self.follow()

    async def _claim(
        self,
        kind: str,
        version: ModelVersion,
        actor: str,
        channel: str,
        now: datetime,
        phase: str,
        data: dict[str, Any] | None,
    ) -> Operation | None:
        return await self.ctx.ops.claim(
            kind,
            version.name,
            version_arn=version.arn,
            channel=channel,
            user=actor,
            at=now,
            status=version.status,
            phase=phase,
            data=data,
        )

    def _already(self, version: ModelVersion, op: Operation | None, actor: str) -> Notice:
        if op is None:
            return reply(f"{version.name} is busy; try again in a moment.", "busy")
        return self.ctx.busy(op, actor, BUSY_WITH.get(op.kind, op.kind))


def _reason(refused: Notice) -> str:
    """Why a request was refused, for the guard's and the schedule's notices."""
    if isinstance(refused, Busy):
        return f"{refused.version_name} is {refused.what}"
    if isinstance(refused, RequestFailed):
        return refused.error
    return refused.text.split(": ", 1)[-1]


def _no_such_version(snapshot: VersionSnapshot, wanted: str) -> Refused:
    names = [v.name for v in snapshot.newest_first()[:VERSIONS_NAMED]]
    return Refused(reason="no-such-version", wanted=wanted, names=names)


def _units_text(low: int, high: int | None) -> str:
    return f"{low} IU" if high is None or high == low else f"{low}–{high} IU"


def hourly_fields(prices: Prices, low: int, high: int) -> dict[str, float]:
    """The estimated cost an hour at `low` and at `high` units, as a notice's fields."""
    return {"hourly_low": prices.hourly(low), "hourly_high": prices.hourly(high)}


class StartStopOutcomes:
    def __init__(self, ctx: LifecycleContext) -> None:
        self.ctx = ctx

    async def step(self, op: Operation, snapshot: VersionSnapshot) -> None:
        """Move a start or a stop along from what Rekognition says now."""
        ctx = self.ctx
        version = snapshot.find(op.version_arn or op.version_name)
        now = ctx.clock.now()
        if version is not None and version.status != op.status:
            op = await ctx.ops.update(op.id, status=version.status)
        step = operation_step(
            OperationFacts(
                kind=op.kind,
                status=version.status if version else None,
                requested=op.phase == REQUESTED,
                unexpected_seen=int(op.data.get("unexpected", 0)),
                age=now - op.started_at,
                slow_reported=bool(op.data.get("slow")),
            )
        )
        if step is Step.WAIT:
            return
        if step is Step.TOLERATE:
            await ctx.ops.update(op.id, data={"unexpected": int(op.data.get("unexpected", 0)) + 1})
            return
        if version is None:
            await self._failed(op, None, "the version no longer exists in the project")
        elif step is Step.RUNNING:
            await self._running(op, version, now)
        elif step is Step.STOPPED:
            await self._stopped(op, version, now)
        elif step is Step.SLOW:
            await ctx.ops.update(op.id, data={"slow": True})
            slow = f"it is still STOPPING after {duration(SLOW_STOP.total_seconds())}"
            await self._failed(op, version, slow, final=False)
        else:
            await self._failed(op, version, self._reason(op, version, step))

    def _reason(self, op: Operation, version: ModelVersion, step: Step) -> str:
        status = version.status
        if op.kind == START:
            if step is Step.FAILED and status == "FAILED":
                return version.status_message or "Rekognition gave no reason"
            if step is Step.NEVER_SENT:
                return (
                    "the request never reached Rekognition (the bot restarted while sending it); "
                    f"run `/cxr start {version.name}` again"
                )
            return f"it is {status} instead of running"
        if step is Step.NEVER_SENT:
            return (
                f"the request never reached Rekognition (the bot restarted while sending it); it "
                f"is still {status}. Run `/cxr stop {version.name}` again"
            )
        return version.status_message or f"the stop did not take effect: it is {status}"

    async def _running(self, op: Operation, version: ModelVersion, now: datetime) -> None:
        ctx = self.ctx
        low = version.min_units or op.data.get("min_units") or 1
        high = version.max_units or op.data.get("max_units")
        await ctx.runs.open_run(version.arn, now, int(low), op.data.get("source", "bot"))
        await ctx.serving.serve(version.arn)
        if op.data.get("quiet"):  # the schedule announced it: audited, not posted again
            await ctx.finish_quietly(op, "ok: RUNNING")
            return
        await ctx.finish(
            op,
            "ok: RUNNING",
            ModelRunning(
                version_name=version.name,
                min_units=int(low),
                max_units=high,
                **hourly_fields(ctx.prices, int(low), int(high or low)),
                took_seconds=(now - op.started_at).total_seconds(),
                by=op.user,
                serving=True,
            ),
        )

    async def _stopped(self, op: Operation, version: ModelVersion, now: datetime) -> None:
        """Confirmed at STOPPED: the run ends here (a STOPPING model is still billed)."""
        ctx = self.ctx
        run = await ctx.runs.close_run(version.arn, now) or await ctx.runs.latest(
            version.arn, op.started_at
        )
        ctx.serving.stopped(version.arn)
        report = op.data.get("report")
        if report is not None and ctx.guard_stops is not None:
            await ctx.finish_quietly(op, report.get("result", "ok: STOPPED"))
            await ctx.guard_stops.stopped(op, run, now)
            return
        stopped_at = run.stopped_at if run and run.stopped_at else now
        await ctx.finish(
            op,
            "ok: STOPPED",
            ModelStopped(
                version_name=version.name,
                ran_seconds=(stopped_at - run.started_at).total_seconds() if run else None,
                cost=ctx.prices.running_cost(run.units, run.started_at, stopped_at)
                if run
                else None,
                by=op.user,
            ),
        )

    async def _failed(
        self, op: Operation, version: ModelVersion | None, reason: str, *, final: bool = True
    ) -> None:
        """Say why the start or stop failed (or, not `final`, is slow) where it was asked."""
        ctx = self.ctx
        if op.kind == START:
            if version is not None:
                ctx.serving.stopped(version.arn)
            notice = ModelStartFailed(version_name=op.version_name, reason=reason, by=op.user)
            await ctx.finish(op, f"failed: {reason}", notice)
            return
        if op.data.get("report") is not None and ctx.guard_stops is not None:
            if final:
                await ctx.finish_quietly(op, f"failed: {reason}")
            await ctx.guard_stops.not_stopped(op, reason)
            return
        stop_failed = ModelStopFailed(version_name=op.version_name, reason=reason, by=op.user)
        if final:
            await ctx.finish(op, f"failed: {reason}", stop_failed)
        else:
            await ctx.post(op.channel, stop_failed)


class InFlight:
    def __init__(
        self, ctx: LifecycleContext, start_stop: StartStopOutcomes, training: TrainingPhases
    ) -> None:
        self.ctx = ctx
        self.start_stop = start_stop
        self.training = training

    async def open_count(self) -> int:
        return len(await self.ctx.ops.open())

    async def needs_versions(self) -> bool:
        return any(op.kind != TRAIN or op.phase == TRAINING for op in await self.ctx.ops.open())

    async def prepare(self) -> None:
        """At start-up: close what a restart cut short, and (with a project but no configured
        version) serve whichever version is running."""
        ctx = self.ctx
        try:
            for op in await ctx.ops.open():
                if ctx.commanded_here(op) or await ctx.commanded_elsewhere(op):
                    continue  # checking its images right now, here or on another instance
                if op.kind == TRAIN and op.phase == VALIDATING:
                    await self.training.interrupted(op)
            if ctx.config.serve_running_on_start and ctx.catalog is not None:
                try:
                    await ctx.sync(await ctx.versions())
                except Exception as exc:
                    log.warning("lifecycle.discovery_failed", extra={"error": aws_error(exc)})
            if await ctx.ops.open():
                log.info("lifecycle.resumed", extra={"operations": len(await ctx.ops.open())})
        except Exception:
            log.exception("lifecycle.resume_failed")

    async def advance(self, versions: list[ModelVersion] | None) -> None:
        """One poll's worth: move every open operation along on the versions just read."""
        ctx = self.ctx
        ops = await ctx.ops.open()
        if ctx.catalog is None:
            return
        snapshot = VersionSnapshot.of(versions) if versions is not None else None
        for op in ops:
            if ctx.commanded_here(op) or await ctx.commanded_elsewhere(op):
                continue  # its command (here or on another instance) is still talking to AWS
            try:
                if op.kind == TRAIN:
                    await self.training.step(op, snapshot)
                elif snapshot is not None:
                    await self.start_stop.step(op, snapshot)
            except Exception:
                log.exception("lifecycle.step_failed", extra={"op": op.id, "kind": op.kind})
        if snapshot is not None:
            await ctx.sync(snapshot)


class Lifecycle(StartStopCommands):
    """The start and stop commands (`StartStopCommands`), training, status, and the poller."""

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
        self.context = LifecycleContext(
            config=config,
            catalog=catalog,
            training=training,
            images=images,
            ops=store.operations,
            runs=store.runs,
            audit=store.audit,
            prices=prices,
            outbox=outbox,
            clock=clock,
            serving=serving,
            model_card=model_card,
        )
        from bot.core.fleet.status import StatusReporter
        from bot.core.fleet.training import TrainingLauncher, TrainingPhases

        super().__init__(self.context, follow=self._follow)
        self._status = StatusReporter(self.context)
        self._training = TrainingLauncher(self.context, follow=self._follow)
        self.in_flight = InFlight(
            self.context, StartStopOutcomes(self.context), TrainingPhases(self.context)
        )
        # Alone (no cost guard), the poller runs while operations are open; the composition
        # root replaces it with the fleet's one poller, shared with the cost guard.
        self.poller = Poller(
            clock=clock,
            catalog=catalog,
            operations=self.in_flight,
            busy_seconds=config.poll_seconds,
        )

    @property
    def rekognition(self) -> bool:
        return self.context.catalog is not None

    @property
    def model_card(self) -> Callable[[], dict[str, Any] | None]:
        """The local model's card, shown by `/cxr status` when there is no Rekognition."""
        return self.context.model_card

    @model_card.setter
    def model_card(self, read: Callable[[], dict[str, Any] | None]) -> None:
        self.context.model_card = read

    # --- /cxr status, start, stop, train ------------------------------------------------------
    async def status(self) -> StatusReport:
        """`/cxr status`: the serving model, the versions, what is in flight, recent actions."""
        return await self._status.report()

    async def train(
        self, actor: str, channel: str, source_text: str, version_name: str | None = None
    ) -> Notice:
        """`/cxr train`: check the images, write the manifest, then follow the training."""
        return await self._training.train(actor, channel, source_text, version_name)

    # --- permissions and the local-only mode --------------------------------------------------
    async def refused(self, actor: str, action: str, target: str, reason: str) -> None:
        """Record a refusal decided by the chat layer (e.g. not an admin)."""
        await self.context.audit.record(
            self.context.clock.now(), actor, action, target or "-", f"refused: {reason}"
        )

    def rekognition_only(self, action: str) -> Notice:
        return self.context.rekognition_only(action)

    # --- operations in flight -----------------------------------------------------------------
    async def resume(self) -> None:
        """At start-up: pick up what a previous run left open, and follow it."""
        await self.in_flight.prepare()
        if await self.context.ops.open():
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
        leases: Leases,
        owner: str,
        idle_seconds: float,
        zone: str,
        leader: Leader | None = None,
    ) -> Poller:
        """One fleet: the guard's stops are reported by it when confirmed, its meter shows in
        `/cxr status`, operations are leased to the instance whose command runs them, and
        one poller serves operations and guard. With `leader` (replicas on one database) only
        the leader's poller acts. Returns that poller, the bot's background job."""
        ctx = self.context
        ctx.guard_stops = guard.stopper

        async def meter() -> list[str]:
            return [line.describe(zone) for line in await guard.meter()]

        ctx.meter = meter
        ctx.leases, ctx.owner = leases, owner
        self.poller = Poller(
            clock=ctx.clock,
            catalog=ctx.catalog,
            operations=self.in_flight,
            busy_seconds=ctx.config.poll_seconds,
            guard=guard,
            idle_seconds=idle_seconds,
            leader=leader,
        )
        return self.poller

    def _follow(self) -> None:
        """What a command calls once it has opened an operation."""
        self.poller.follow()
