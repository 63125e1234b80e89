"""A start or a stop after the request: the poller's steps that follow it to its outcome.

Rekognition answers a start or a stop with STARTING or STOPPING; each poll reads the version's
status, `bot.core.fleet.decisions.operation_step` decides, and this module acts: running (the
bot now serves it, and a run is opened for the cost figures), stopped (confirmed at STOPPED:
the run closes there, billing's one rule), or failed with Rekognition's reason. A status that
is neither the expected one nor an end state is tolerated for a few polls: DescribeProjectVersions
can lag. A stop the cost guard asked for is reported by the guard, in its alert's thread.
"""

from __future__ import annotations

from datetime import datetime

from bot.core.fleet.decisions import SLOW_STOP, OperationFacts, Step, operation_step
from bot.core.fleet.state import START, Operation
from bot.core.lifecycle.context import LifecycleContext, VersionSnapshot
from bot.core.lifecycle.notices import ModelRunning, ModelStartFailed, ModelStopFailed, ModelStopped
from bot.core.lifecycle.start_stop import REQUESTED, hourly_fields
from bot.core.model_versions import ModelVersion
from bot.core.pricing import duration


class StartStopOutcomes:
    def __init__(self, ctx: LifecycleContext) -> None:
        self.ctx = ctx

    async def step(self, op: Operation, snapshot: VersionSnapshot) -> None:
        """Move a start or a stop along from what Rekognition says now."""
        ctx = self.ctx
        version = snapshot.find(op.version_arn or op.version_name)
        now = ctx.clock.now()
        if version is not None and version.status != op.status:
            op = ctx.ops.update(op.id, status=version.status)
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
            ctx.ops.update(op.id, data={"unexpected": int(op.data.get("unexpected", 0)) + 1})
            return
        if version is None:
            await self._failed(op, None, "the version no longer exists in the project")
        elif step is Step.RUNNING:
            await self._running(op, version, now)
        elif step is Step.STOPPED:
            await self._stopped(op, version, now)
        elif step is Step.SLOW:
            ctx.ops.update(op.id, data={"slow": True})
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
        ctx.runs.open_run(version.arn, now, int(low), op.data.get("source", "bot"))
        ctx.serving.serve(version.arn)
        if op.data.get("quiet"):  # the schedule announced it: audited, not posted again
            ctx.finish_quietly(op, "ok: RUNNING")
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
        run = ctx.runs.close_run(version.arn, now) or ctx.runs.latest(version.arn, op.started_at)
        ctx.serving.stopped(version.arn)
        report = op.data.get("report")
        if report is not None and ctx.guard_stops is not None:
            ctx.finish_quietly(op, report.get("result", "ok: STOPPED"))
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
                ctx.finish_quietly(op, f"failed: {reason}")
            await ctx.guard_stops.not_stopped(op, reason)
            return
        stop_failed = ModelStopFailed(version_name=op.version_name, reason=reason, by=op.user)
        if final:
            await ctx.finish(op, f"failed: {reason}", stop_failed)
        else:
            await ctx.post(op.channel, stop_failed)
