"""A start or a stop after the request: the watcher's steps that follow it to its outcome.

Rekognition answers a start or a stop with STARTING or STOPPING; each poll reads the version's
status, and when it settles the outcome is posted where the command was given: running (the
bot now serves it, and a run is opened for the cost figures), stopped (what the run cost), or
failed with Rekognition's reason. A status that is neither the expected one nor an end state is
tolerated for a few polls (`LifecycleContext.patient`): DescribeProjectVersions can lag.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.core import model_versions as mv
from bot.core.lifecycle.context import LifecycleContext, VersionSnapshot
from bot.core.lifecycle.notices import ModelRunning, ModelStartFailed, ModelStopFailed, ModelStopped
from bot.core.lifecycle.start_stop import REQUESTED, hourly_fields
from bot.core.model_versions import ModelVersion
from bot.state.operations import START, Operation
from bot.state.runs import Run


class StartStopOutcomes:
    def __init__(self, ctx: LifecycleContext) -> None:
        self.ctx = ctx

    async def step(self, op: Operation, snapshot: VersionSnapshot) -> None:
        """Move a start or a stop along from what Rekognition says now."""
        version = snapshot.find(op.version_arn or op.version_name)
        now = self.ctx.clock.now()
        if version is None:
            await self.ctx.finish(
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
            op = self.ctx.ops.update(op.id, status=version.status)
        if op.kind == START:
            await self._step_start(op, version, now)
        else:
            await self._step_stop(op, version, now)

    async def _step_start(self, op: Operation, version: ModelVersion, now: datetime) -> None:
        ctx = self.ctx
        status = version.status
        if status == mv.STARTING:
            return
        if status == mv.RUNNING:
            low = version.min_units or op.data.get("min_units") or 1
            high = version.max_units or op.data.get("max_units")
            ctx.runs.open_run(version.arn, now, int(low), "bot")
            ctx.serving.serve(version.arn)
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
            return
        if status == mv.FAILED:
            reason = version.status_message or "Rekognition gave no reason"
        elif ctx.patient(op):
            return
        elif op.phase == REQUESTED:
            reason = (
                "the request never reached Rekognition (the bot restarted while sending it); "
                f"run `/cxr start {version.name}` again"
            )
        else:
            reason = f"it is {status} instead of running"
        ctx.serving.stopped(version.arn)
        await ctx.finish(
            op,
            f"failed: {reason}",
            ModelStartFailed(version_name=version.name, reason=reason, by=op.user),
        )

    async def _step_stop(self, op: Operation, version: ModelVersion, now: datetime) -> None:
        ctx = self.ctx
        status = version.status
        if status == mv.STOPPING:
            return
        if status in (mv.STOPPED, mv.TRAINING_COMPLETED):
            run = ctx.runs.close_run(version.arn, now) or self._last_run(version.arn, op)
            ctx.serving.stopped(version.arn)
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
            return
        if ctx.patient(op):
            return
        if op.phase == REQUESTED:
            reason = (
                f"the request never reached Rekognition (the bot restarted while sending it); it "
                f"is still {status}. Run `/cxr stop {version.name}` again"
            )
        else:
            reason = version.status_message or f"it is still {status}"
        await ctx.finish(
            op,
            f"failed: {reason}",
            ModelStopFailed(version_name=version.name, reason=reason, by=op.user),
        )

    def _last_run(self, version_arn: str, op: Operation) -> Run | None:
        """The run a stop ended, when something else (a status, the cost guard) closed it."""
        now = self.ctx.clock.now()
        runs = [
            r
            for r in self.ctx.runs.overlapping(op.started_at - timedelta(days=400), now)
            if r.version_arn == version_arn
            and r.stopped_at is not None
            and r.stopped_at >= op.started_at
        ]
        return runs[-1] if runs else None
