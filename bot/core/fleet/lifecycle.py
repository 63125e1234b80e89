"""`Lifecycle`, the API `commands/` and the composition root call (status, start, stop,
train), and `InFlight`, the operations the fleet poller moves along on each poll's versions
(an operation still commanded here or by another instance is left alone).
`Lifecycle.join_guard` makes the lifecycle and the cost guard one fleet with one poller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot.core.clock import Clock
from bot.core.fleet.context import (
    LifecycleConfig,
    LifecycleContext,
    Serving,
    TrainingBackend,
    VersionSnapshot,
    aws_error,
)
from bot.core.fleet.poller import Leader, Poller
from bot.core.fleet.start_stop import StartStopCommands, StartStopOutcomes
from bot.core.fleet.state import TRAIN, Leases, Store
from bot.core.fleet.status import StatusReport, StatusReporter
from bot.core.fleet.training import TRAINING, VALIDATING, TrainingLauncher, TrainingPhases
from bot.core.model_versions import ModelCatalog, ModelVersion
from bot.core.ports import Notice, Outbox
from bot.core.pricing import Prices
from bot.core.training_data import ImageStore

if TYPE_CHECKING:
    from bot.core.fleet.guard import CostGuard

log = logging.getLogger(__package__)


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
                if op.id in ctx.in_command or await ctx.commanded_elsewhere(op):
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
            await ctx.sync(snapshot)


class Lifecycle:
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
        self._status = StatusReporter(self.context)
        self.start_stop = StartStopCommands(self.context, follow=self._follow)
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

    async def propose_start(
        self, actor: str, version: str | None, min_units: int | None, max_units: int | None
    ) -> Notice:
        """`/cxr start`: the cost, to be confirmed with a button; or why not."""
        return await self.start_stop.propose_start(actor, version, min_units, max_units)

    async def confirm_start(
        self, actor: str, channel: str, version_arn: str, min_units: int, max_units: int | None
    ) -> Notice:
        """The Start button: StartProjectVersion, then follow it until it runs."""
        return await self.start_stop.confirm_start(
            actor, channel, version_arn, min_units, max_units
        )

    async def cancel_start(self, actor: str, version_name: str) -> Notice:
        """The Cancel button: record it, and say so in place of the proposal."""
        return await self.start_stop.cancel_start(actor, version_name)

    async def stop(self, actor: str, channel: str, version: str | None = None) -> Notice:
        """`/cxr stop`: StopProjectVersion, then follow it until it has stopped."""
        return await self.start_stop.stop(actor, channel, version)

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
