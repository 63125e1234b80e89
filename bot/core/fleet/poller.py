"""The one loop over the model fleet: read the versions once per tick, decide, act.

Operations in flight (start, stop, train: the `Lifecycle`'s) and the cost guard (runs, idle
alerts, auto-stop, schedule, summary) share one `DescribeProjectVersions` per tick, in that
order: the operations step first (a stop confirmed at STOPPED closes its run and posts its
outcome), then the guard, which sees the state the operations left.

It ticks every `busy_seconds` while an operation is open and every `idle_seconds` otherwise;
a command that opens an operation wakes it (`follow`) so the first poll comes `busy_seconds`
later. Without a guard (`idle_seconds` None) it stops once no operation is open, and a command
starts it again. A leader lease (`bot.core.leadership.Leadership`) keeps other replicas on the
same database from acting: their pollers ask again at each tick and take over once the
leader's term lapses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from bot.core.model_versions import ModelVersion

if TYPE_CHECKING:
    from bot.core.fleet.guard import CostGuard
    from bot.core.fleet.lifecycle import Lifecycle
    from bot.core.leadership import Leadership

log = logging.getLogger(__package__)


class Poller:
    def __init__(
        self,
        lifecycle: Lifecycle,
        guard: CostGuard | None = None,
        idle_seconds: float | None = None,
        leader: Leadership | None = None,
    ) -> None:
        self.lifecycle = lifecycle  # its operations in flight are what the poller moves along
        self.clock = lifecycle.clock
        self.catalog = lifecycle.catalog
        self.guard = guard
        self.busy_seconds = lifecycle.config.poll_seconds
        self.idle_seconds = idle_seconds
        self.leader = leader
        self.lock = guard.lock if guard is not None else asyncio.Lock()
        self.ticks = 0  # completed polls, led or not (tests watch it move)
        self.led = 0  # polls this instance acted on (it held the leader lease)
        self._task: asyncio.Task[None] | None = None
        self._sleeping = False
        self._planned: float | None = None  # the interval of the sleep in progress
        self._woken = asyncio.Event()
        self._prepared = False  # what a previous run left open is picked up by the leader

    # --- the loop ------------------------------------------------------------------------
    async def run(self) -> None:
        """The background job: pick up what a previous run left open, then poll forever
        (with a guard) or while operations are open (without one)."""
        self._task = asyncio.current_task()
        await self._loop(immediately=True)

    async def _loop(self, immediately: bool) -> None:
        first = True
        while self.idle_seconds is not None or await self.lifecycle.open_count():
            if not (first and immediately):
                await self._sleep()
            first = False
            await logged(self.tick(), "fleet.tick_failed")

    def follow(self, *, immediately: bool = False) -> None:
        """An operation was opened: make sure it is polled every `busy_seconds` from now."""
        if self._task is not None and not self._task.done():
            if self._planned is None or self._planned > self.busy_seconds:
                self._woken.set()  # re-plan: the next poll comes `busy_seconds` from now
            return
        if self.idle_seconds is None:  # with a guard, `run` is the bot's background job
            self._task = asyncio.create_task(self._loop(immediately), name="fleet poller")

    async def _interval(self) -> float:
        if await self.lifecycle.open_count() or self.idle_seconds is None:
            return self.busy_seconds
        return self.idle_seconds

    async def _sleep(self) -> None:
        try:
            while True:
                self._sleeping = False  # planning (again, after a `follow`): not asleep yet
                self._woken.clear()
                self._planned = None  # a `follow` meanwhile makes it plan again
                self._planned = await self._interval()
                sleep = asyncio.ensure_future(self.clock.sleep(self._planned))
                woken = asyncio.ensure_future(self._woken.wait())
                # Asleep only once the clock holds the sleep (its task has run to its first
                # await): `settle` returns on `_sleeping`, and a fake clock advanced before
                # the sleep is registered would wake nothing.
                await asyncio.sleep(0)
                self._sleeping = True
                try:
                    done, _ = await asyncio.wait({sleep, woken}, return_when="FIRST_COMPLETED")
                finally:
                    for future in (sleep, woken):
                        future.cancel()
                if sleep in done:
                    return
        finally:
            self._sleeping = False
            self._planned = None

    async def tick(self) -> None:
        """One poll: read the versions once, move the operations along, let the guard judge."""
        async with self.lock:
            now = self.clock.now()
            if self.leader is not None and not await self.leader.hold(now):
                log.debug("fleet.not_leader")
                self.ticks += 1
                return
            if not self._prepared and self.idle_seconds is not None:
                self._prepared = True
                await logged(self.lifecycle.prepare(), "fleet.prepare_failed")
            versions: list[ModelVersion] | None = None
            if self.catalog is not None and (
                self.guard is not None or await self.lifecycle.needs_versions()
            ):
                try:
                    versions = await self.catalog.versions()
                except Exception as exc:
                    log.warning("fleet.describe_failed", extra={"error": type(exc).__name__})
            await logged(self.lifecycle.advance(versions), "fleet.operations_failed")
            if self.guard is not None:
                await logged(self.guard.review(versions, now), "fleet.guard_failed")
            self.ticks += 1
            self.led += 1

    # --- waiting for it, stopping it -----------------------------------------------------
    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def settle(self, within: float = 10.0) -> None:
        """Wait until the poller is asleep or done (tests: advance a `FakeClock`, then settle,
        and the poll it woke has finished)."""
        await asyncio.sleep(0)  # a job scheduled just before (the bot's start) begins first
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self.running and not (
            self._sleeping and not self._woken.is_set() and not self.lock.locked()
        ):  # asleep on the clock, with no wake-up (a `follow`: it plans again) pending
            if loop.time() > deadline:
                raise TimeoutError("the fleet poller did not settle")
            await asyncio.sleep(0.005)

    async def drain(self) -> None:
        """Wait until the poller has ended (without a guard: every operation has ended)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def close(self) -> None:
        """Stop polling (operations stay open in the database and resume on the next start)."""
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.leader is not None:
            with contextlib.suppress(Exception):
                await self.leader.release()


async def logged(step: Awaitable[None], event: str) -> None:
    """Await `step`; an error is logged as `event` and ends neither the loop nor start-up."""
    try:
        await step
    except Exception:  # not CancelledError (a BaseException): cancelling still cancels
        log.exception(event)
