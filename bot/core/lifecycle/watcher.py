"""The operations in flight, as the fleet poller moves them along.

Commands claim an operation and call `follow`; each tick of the fleet poller
(`bot.core.fleet.poller`) hands `advance` the versions it read once, and each open operation
takes its step (start and stop: `StartStopOutcomes.step`, training: `TrainingPhases.step`).
An operation whose command is still talking to AWS is skipped until the command is done.
`prepare` picks up what a previous run left open.
"""

from __future__ import annotations

import logging

from bot.core.fleet.state import TRAIN
from bot.core.lifecycle.context import LifecycleContext, VersionSnapshot, aws_error
from bot.core.lifecycle.start_stop_outcomes import StartStopOutcomes
from bot.core.lifecycle.training_phases import TRAINING, VALIDATING, TrainingPhases
from bot.core.model_versions import ModelVersion

log = logging.getLogger(__package__)


class InFlight:
    def __init__(
        self, ctx: LifecycleContext, start_stop: StartStopOutcomes, training: TrainingPhases
    ) -> None:
        self.ctx = ctx
        self.start_stop = start_stop
        self.training = training

    def open_count(self) -> int:
        return len(self.ctx.ops.open())

    def needs_versions(self) -> bool:
        return any(op.kind != TRAIN or op.phase == TRAINING for op in self.ctx.ops.open())

    async def prepare(self) -> None:
        """At start-up: close what a restart cut short, and (with a project but no configured
        version) serve whichever version is running."""
        ctx = self.ctx
        try:
            for op in ctx.ops.open():
                if op.kind == TRAIN and op.phase == VALIDATING:
                    await self.training.interrupted(op)
            if ctx.config.serve_running_on_start and ctx.catalog is not None:
                try:
                    ctx.sync(await ctx.versions())
                except Exception as exc:
                    log.warning("lifecycle.discovery_failed", extra={"error": aws_error(exc)})
            if ctx.ops.open():
                log.info("lifecycle.resumed", extra={"operations": len(ctx.ops.open())})
        except Exception:
            log.exception("lifecycle.resume_failed")

    async def advance(self, versions: list[ModelVersion] | None) -> None:
        """One poll's worth: move every open operation along on the versions just read."""
        ctx = self.ctx
        ops = ctx.ops.open()
        if ctx.catalog is None:
            return
        snapshot = VersionSnapshot.of(versions) if versions is not None else None
        for op in ops:
            if op.id in ctx.in_command or await ctx.commanded_elsewhere(op):
                continue  # its command (here or on another instance) is still talking to AWS
            try:
                if op.kind == TRAIN:
                    await self.training.step(op, snapshot)
                elif snapshot is not None:
                    await self.start_stop.step(op, snapshot)
            except Exception:
                log.exception("lifecycle.step_failed", extra={"op": op.id, "kind": op.kind})
        if snapshot is not None:
            ctx.sync(snapshot)
