"""`CostGuard`, the one object the rest of the bot knows: it builds the collaborators around
one shared context, reviews each poll's versions, and serializes polls and button presses with a lock so that a
press never acts on a half-judged tick.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from bot.core.cost_guard.alerts import EpisodeAlerts
from bot.core.cost_guard.config import GuardConfig
from bot.core.cost_guard.context import FleetActions, GuardContext, describe_error, log
from bot.core.cost_guard.idle import IdleRules
from bot.core.cost_guard.meter import Meter, MeterLine
from bot.core.cost_guard.observer import Observer
from bot.core.cost_guard.presses import ButtonPresses, PressResult
from bot.core.cost_guard.schedule_actions import ScheduledActions
from bot.core.cost_guard.stopper import Stopper
from bot.core.cost_guard.summary import ClassificationCounts, SpendSummaries
from bot.core.cost_notices import SpendSummary
from bot.core.fleet.state import Audit, GuardMemory, Runs
from bot.core.model_versions import RUNNING, ModelCatalog, ModelVersion
from bot.core.ports import Outbox
from bot.core.pricing import Prices
from bot.core.usage import UsageSource

if TYPE_CHECKING:
    from bot.core.clock import Clock
    from bot.core.routing import ModelRouter


class CostGuard:
    def __init__(
        self,
        *,
        catalog: ModelCatalog,
        usage: UsageSource,
        own: UsageSource,
        store: GuardMemory,
        runs: Runs,
        audit: Audit,
        prices: Prices,
        outbox: Outbox,
        clock: Clock,
        config: GuardConfig,
        router: ModelRouter | None = None,
        serving_version: Callable[[], str | None] | None = None,
        classifications: ClassificationCounts | None = None,
        stops: FleetActions | None = None,
    ) -> None:
        context = GuardContext(
            catalog=catalog,
            usage=usage,
            own=own,
            store=store,
            runs=runs,
            audit=audit,
            prices=prices,
            outbox=outbox,
            clock=clock,
            config=config,
            router=router,
            serving_version=serving_version or (lambda: None),
            stops=stops,
        )
        alerts = EpisodeAlerts(context)
        stopper = Stopper(context, alerts)
        self.context = context
        self.observer = Observer(context, alerts)
        self.schedule = ScheduledActions(context, stopper)
        self.idle = IdleRules(context, alerts, stopper, self.observer, self.schedule)
        self.presses = ButtonPresses(context, alerts, self.observer, stopper)
        self.summaries = SpendSummaries(context, classifications)
        self.status_meter = Meter(context)
        self.stopper = stopper  # told by the poller when one of its stops is confirmed
        self.lock = asyncio.Lock()
        self.ticks = 0  # completed polls (tests and /healthz can watch it move)
        self.last_tick_at: datetime | None = None

    # --- the shared dependencies, as callers (and tests) read and swap them ------------------
    @property
    def config(self) -> GuardConfig:
        return self.context.config

    @property
    def store(self) -> GuardMemory:
        return self.context.store

    @property
    def clock(self) -> Clock:
        return self.context.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self.context.clock = clock

    # --- the poll ------------------------------------------------------------------------
    async def tick(self) -> None:
        """One poll on its own (the fleet poller calls `review` with the versions it read)."""
        async with self.lock:
            try:
                versions = await self.context.catalog.versions()
            except Exception as exc:
                log.warning("cost_guard.describe_failed", extra={"error": describe_error(exc)})
                versions = None
            await self.review(versions, self.context.now())

    async def review(self, versions: list[ModelVersion] | None, now: datetime) -> None:
        """Observe every version, apply the schedule, judge idleness, summarise (the caller
        holds `lock`)."""
        now = now.astimezone(UTC)
        if versions is not None:
            await self.observer.observe(versions, now)
            await self.schedule.apply(versions, now)
            for version in versions:
                if version.status == RUNNING:
                    await self.idle.judge(version, now)
        await self.summaries.post_when_due(now)
        self.ticks += 1
        self.last_tick_at = now

    # --- buttons -----------------------------------------------------------------------------
    async def settle(self) -> None:
        """Wait for a poll or press in progress to finish (tests driving a fake clock)."""
        async with self.lock:
            pass

    async def press(self, episode_id: int, action: str, user: str) -> PressResult:
        """An admin pressed Stop now / Keep 1 h / Keep 4 h on an idle alert."""
        async with self.lock:
            return await self.presses.press(episode_id, action, user, self.context.now())

    def record_refusal(self, episode_id: int, action: str, user: str) -> None:
        """A non-admin pressed a button: audited, nothing else changes."""
        self.presses.record_refusal(episode_id, action, user, self.context.now())

    # --- reports -----------------------------------------------------------------------------
    async def spend_summary(self, day: date, now: datetime | None = None) -> SpendSummary:
        """What each version cost on one local day (up to `now` if the day isn't over)."""
        return await self.summaries.summarise(day, now or self.context.now())

    def meter(self, now: datetime | None = None) -> list[MeterLine]:
        """Every version the guard sees running, from SQLite (no AWS calls)."""
        return self.status_meter.lines(now or self.context.now())
