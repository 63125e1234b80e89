"""`/cxr start` and `/cxr stop`, and what follows them: the fleet's one start path and one
stop path.

A start is two steps because a running version bills by the hour: `propose_start` shows the
cost and the Start / Cancel buttons, `confirm_start` asks Rekognition; both refuse early
without an AWS call that changes anything. Every start and stop (commands, buttons, the
schedule, auto-stop) claims an operation, then asks Rekognition; `StartStopOutcomes` follows
it on each poll (`decisions.operation_step`): running, stopped (confirmed at STOPPED, where the
run ends), or failed with the reason. A change started elsewhere is adopted and followed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from bot.core import model_versions as mv
from bot.core.fleet.context import LifecycleContext, VersionSnapshot, aws_error, reply
from bot.core.fleet.decisions import (
    SLOW_STOP,
    STARTABLE,
    STOPPABLE,
    OperationFacts,
    Step,
    operation_step,
)
from bot.core.fleet.notices import (
    LifecycleReply,
    ModelRunning,
    ModelStartFailed,
    ModelStopFailed,
    ModelStopped,
    StartCancelled,
    StartProposal,
    StartRequested,
    StopRequested,
)
from bot.core.fleet.state import START, STOP, TRAIN, Operation
from bot.core.model_versions import ModelVersion
from bot.core.ports import Notice
from bot.core.pricing import Prices, duration, usd

log = logging.getLogger(__package__)

VERSIONS_NAMED = 10  # in "there's no version …": the newest ones

# phases (Operation.phase)
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
            return reply("That model version doesn't exist any more. Run `/cxr status`.", "refused")
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
                reply(
                    "Inference units: the minimum must be at least 1 and the maximum at least the "
                    "minimum, e.g. `/cxr start cxr.v2 1 3`.",
                    "refused",
                ),
            )
        if max(low, high or low) > cap:
            return (
                low,
                high,
                reply(
                    f"That's more than the {cap} inference units I'm allowed to start "
                    f"(about {usd(self.ctx.prices.hourly(cap))}/hour at {cap}). Ask an admin to "
                    "raise CXR_MAX_INFERENCE_UNITS if you really need more.",
                    "refused",
                ),
            )
        return low, high, None

    def _choose_to_start(
        self, snapshot: VersionSnapshot, wanted: str | None
    ) -> ModelVersion | Notice:
        if not snapshot.by_name:
            return reply(
                "The project has no model versions yet. Train one with "
                "`/cxr train s3://bucket/prefix`.",
                "refused",
            )
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
        return reply(
            "No version is ready to start (none has finished training). See `/cxr status`.",
            "refused",
        )

    async def _start_blocker(
        self, version: ModelVersion, actor: str, channel: str | None = None
    ) -> Notice | None:
        op = await self.ctx.ops.open_for(version.name)
        if op is not None:
            return self._already(version, op, actor)
        status = version.status
        if status == mv.RUNNING:
            run = await self.ctx.runs.current(version.arn)
            since = f" for {duration(run.seconds(self.ctx.clock.now()))}" if run else ""
            return reply(
                f"{version.name} is already running{since} "
                f"({_units_text(version.min_units or 1, version.max_units)}). "
                f"Nothing to do; `/cxr stop {version.name}` stops it.",
                "busy",
            )
        if status == mv.STARTING:
            if channel is not None:
                await self._adopt(START, version, actor, channel)
            return reply(
                f"{version.name} is already starting (not asked by me, or before a restart). "
                "I'll post in this channel when it's running."
                if channel
                else f"{version.name} is already starting.",
                "busy",
            )
        if status == mv.STOPPING:
            return reply(
                f"{version.name} is stopping right now; start it again once it has stopped.",
                "busy",
            )
        if status == mv.TRAINING_IN_PROGRESS:
            return reply(f"{version.name} is still training.", "busy")
        if status == mv.TRAINING_FAILED:
            return reply(
                f"{version.name} failed to train, so it can't be started: "
                f"{version.status_message or 'no reason given'}",
                "refused",
            )
        if status not in STARTABLE:
            return reply(f"{version.name} can't be started in its state ({status}).", "refused")
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
            return reply(
                f"{chosen.name} is already stopping. I'll post in this channel when it has "
                "stopped.",
                "busy",
            )
        if chosen.status not in STOPPABLE:
            return reply(
                f"{chosen.name} isn't running (it is {chosen.status}), so there's nothing to stop.",
                "busy",
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
            return reply(
                "No model version is running, so there's nothing to stop (and nothing "
                "being billed for inference).",
                "busy",
            )
        if len(live) > 1:
            names = ", ".join(v.name for v in live)
            return reply(
                f"Several versions are running: {names}. Say which: `/cxr stop {live[0].name}`.",
                "refused",
            )
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
        return refused.text.split(": ", 1)[-1]

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
        return refused.text.split(": ", 1)[-1]

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
                return reply(f"Rekognition didn't {kind} {version.name}: {reason}", "error")
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


def _no_such_version(snapshot: VersionSnapshot, wanted: str) -> LifecycleReply:
    names = ", ".join(v.name for v in snapshot.newest_first()[:VERSIONS_NAMED]) or "none"
    return reply(f"There's no version `{wanted}` in the project. Versions: {names}.", "refused")


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
