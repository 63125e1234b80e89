"""Time as a port, so hours of model life can pass in milliseconds in tests and simulations."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


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

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._now + timedelta(seconds=seconds), future))
        await future

    async def advance(self, seconds: float = 0, *, to: datetime | None = None) -> None:
        """Move time forward, waking sleepers in deadline order and letting them run."""
        target = to or self._now + timedelta(seconds=seconds)
        while True:
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
