"""Time as a port, so hours of model life can pass in milliseconds in tests and simulations."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    @staticmethod
    def monotonic() -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to. `sleep` returns once `advance` passes its deadline."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        self._sleepers: list[tuple[datetime, asyncio.Future[None]]] = []
        self._tracked: set[asyncio.Future[Any]] = set()

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._now + timedelta(seconds=seconds), future))
        await future

    def track(self, work: asyncio.Future[Any]) -> None:
        """Hold time still until `work` is done (a lease renewal on a database thread, say,
        which must land at the time it was made, not after the clock has moved on)."""
        self._tracked.add(work)
        work.add_done_callback(self._tracked.discard)

    async def advance(self, seconds: float = 0, *, to: datetime | None = None) -> None:
        """Move time forward, waking sleepers in deadline order and letting them run."""
        target = to or self._now + timedelta(seconds=seconds)
        while True:
            await _settle()
            while self._tracked:
                await asyncio.wait(set(self._tracked))
                await _settle()
            due = sorted(
                (s for s in self._sleepers if s[0] <= target and not s[1].done()),
                key=lambda s: s[0],
            )
            if not due:
                break
            deadline, future = due[0]
            self._sleepers.remove(due[0])
            self._now = max(self._now, deadline)
            future.set_result(None)
        self._now = target
        self._sleepers = [s for s in self._sleepers if not s[1].done()]
        await _settle()


async def _settle(rounds: int = 20) -> None:
    """Give woken tasks a few turns of the loop (and threads a moment) to reach their next await."""
    for _ in range(rounds):
        await asyncio.sleep(0)
