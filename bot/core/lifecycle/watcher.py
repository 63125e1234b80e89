"""The one task that follows every open operation until it ends, across restarts.

Commands claim an operation and call `follow`; the watcher wakes every `poll_seconds`, reads the
project's versions once per `tick` and hands each operation to its steps (start and stop:
`StartStopOutcomes.step`, training: `TrainingPhases.step`), and ends when no operation is left open.
An operation whose command is still talking to AWS is skipped until the command is done.
`resume` picks up what a previous run left open; `settle`, `drain` and `close` are how tests and
shutdown wait for, or stop, the task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from bot.core.lifecycle.context import LifecycleContext, VersionSnapshot, aws_error
from bot.core.lifecycle.start_stop_outcomes import StartStopOutcomes
from bot.core.lifecycle.training_phases import TRAINING, VALIDATING, TrainingPhases
from bot.state.operations import TRAIN

log = logging.getLogger(__package__)


class Watcher:
    def __init__(
        self, ctx: LifecycleContext, start_stop: StartStopOutcomes, training: TrainingPhases
    ) -> None:
        self.ctx = ctx
        self.start_stop = start_stop
        self.training = training
        self._tasks: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None  # the watching loop, when it runs
        self._sleeping = False

    async def resume(self) -> None:
        """At start-up: follow the operations a previous run left open, and (with a project
        but no configured version) serve whichever version is running."""
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
                self.follow(immediately=True)
        except Exception:
            log.exception("lifecycle.resume_failed")

    def follow(self, *, immediately: bool = False) -> None:
        """Make sure the watcher runs (a no-op while it does); `immediately`: poll at once."""
        if self._task is not None and not self._task.done():
            return
        self._task = self._spawn(self._watch(immediately), "lifecycle watcher")

    async def _watch(self, immediately: bool) -> None:
        first = True
        while self.ctx.ops.open():
            if not (first and immediately):
                self._sleeping = True
                try:
                    await self.ctx.clock.sleep(self.ctx.config.poll_seconds)
                finally:
                    self._sleeping = False
            first = False
            try:
                await self.tick()
            except Exception:
                log.exception("lifecycle.tick_failed")

    async def tick(self) -> None:
        """One poll: read the versions once, then move every open operation along."""
        ctx = self.ctx
        ops = ctx.ops.open()
        if not ops or ctx.catalog is None:
            return
        snapshot: VersionSnapshot | None = None
        if any(op.kind != TRAIN or op.phase == TRAINING for op in ops):
            try:
                snapshot = await ctx.versions()
            except Exception as exc:
                log.warning("lifecycle.describe_failed", extra={"error": aws_error(exc)})
        for op in ops:
            if op.id in ctx.in_command:
                continue  # its command is still talking to AWS
            try:
                if op.kind == TRAIN:
                    await self.training.step(op, snapshot)
                elif snapshot is not None:
                    await self.start_stop.step(op, snapshot)
            except Exception:
                log.exception("lifecycle.step_failed", extra={"op": op.id, "kind": op.kind})
        if snapshot is not None:
            ctx.sync(snapshot)

    # --- the task -------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def watching(self) -> bool:
        return self._task is not None and not self._task.done()

    async def settle(self, within: float = 10.0) -> None:
        """Wait until the watcher is asleep (or done) and nothing else is running (tests:
        advance a `FakeClock`, then settle, and the poll it woke has finished)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            others = [t for t in self._tasks if t is not self._task and not t.done()]
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
