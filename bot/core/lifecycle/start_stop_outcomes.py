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
from bot.core.pricing import duration
from bot.state.operations import START, Operation

SLOW_STOP = timedelta(minutes=30)  # AWS: a stop takes minutes; past this, say so


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
        """A stop is confirmed at STOPPED (billing ends there, `bot.core.fleet.billing`); one
        that doesn't take effect is reported, and one still STOPPING after `SLOW_STOP` is
        reported once and followed on."""
        ctx = self.ctx
        status = version.status
        report = op.data.get("report")
        if status == mv.STOPPING:
            if now - op.started_at >= SLOW_STOP and not op.data.get("slow"):
                ctx.ops.update(op.id, data={"slow": True})
                await self._not_stopped(
                    op,
                    version,
                    f"it is still STOPPING after {duration(SLOW_STOP.total_seconds())}",
                    final=False,
                )
            return
        if status in (mv.STOPPED, mv.TRAINING_COMPLETED):
            run = ctx.runs.close_run(version.arn, now) or ctx.runs.latest(
                version.arn, op.started_at
            )
            ctx.serving.stopped(version.arn)
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
            return
        if ctx.patient(op):
            return
        if op.phase == REQUESTED:
            reason = (
                f"the request never reached Rekognition (the bot restarted while sending it); it "
                f"is still {status}. Run `/cxr stop {version.name}` again"
            )
        else:
            reason = version.status_message or f"the stop did not take effect: it is {status}"
        await self._not_stopped(op, version, reason, final=True)

    async def _not_stopped(
        self, op: Operation, version: ModelVersion, reason: str, *, final: bool
    ) -> None:
        ctx = self.ctx
        if op.data.get("report") is not None and ctx.guard_stops is not None:
            if final:
                ctx.finish_quietly(op, f"failed: {reason}")
            await ctx.guard_stops.not_stopped(op, reason)
            return
        notice = ModelStopFailed(version_name=version.name, reason=reason, by=op.user)
        if final:
            await ctx.finish(op, f"failed: {reason}", notice)
        else:
            await ctx.post(op.channel, notice)
