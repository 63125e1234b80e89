"""Replicas on one database under the fenced leader lease: a leader paused (a GC, a frozen VM)
past its term wakes up mid-tick, after another replica took the lead and acted, and neither
alerts nor stops a second time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests import test_cost_guard_wire as wire
from tests.harness import BotHarness
from tests.test_cost_guard_wire import alerts, bot_settings
from tests.test_fleet_leader import polled, run_for, two_instances

clock, cloudwatch, console = wire.clock, wire.cloudwatch, wire.console


class Pause:
    """Freezes one replica at a point of its tick, and its lease renewals with it."""

    def __init__(self, bot: BotHarness) -> None:
        self.reached = asyncio.Event()
        self.resume = asyncio.Event()
        self.leadership = bot.services.lifecycle.poller.leader
        step = self.leadership.step

        async def frozen_step(now: Any = None) -> Any:
            if self.reached.is_set():
                await self.resume.wait()
            return await step(now)

        self.leadership.step = frozen_step

    def around(self, owner: Any, name: str) -> None:
        """Pause when `owner.name` is called, then carry on as the awakened leader would."""
        original = getattr(owner, name)

        async def paused(*args: Any, **kwargs: Any) -> Any:
            self.reached.set()
            await self.resume.wait()
            return await original(*args, **kwargs)

        setattr(owner, name, paused)


async def one_poll(bot: BotHarness, clock) -> None:
    poller = bot.services.lifecycle.poller
    await bot.services.lifecycle.settle()  # asleep on the clock, so the advance wakes it
    before = poller.ticks
    await clock.advance(bot.services.cost_guard.config.interval.total_seconds())
    await polled([bot], [before + 1])
    await bot.services.lifecycle.settle()


@pytest.mark.parametrize("paused_at", ["alert", "stop"])
async def test_a_paused_leader_that_lost_its_term_neither_alerts_nor_stops(
    slack, tmp_path, console, clock, cloudwatch, paused_at
):
    console.status = "RUNNING"
    settings = bot_settings(cxr_auto_stop_minutes=60, cxr_sole_client=True)
    first, second = await two_instances(slack, tmp_path, console, clock, **settings)
    pause = Pause(first)
    guard = first.services.cost_guard
    if paused_at == "alert":  # decided to open the idle alert (at 30 min), not yet recorded
        pause.around(guard, "open_alert")
        before = 25
    else:  # decided to auto-stop (at 60 min), not yet recorded
        pause.around(guard, "stop")
        before = 55
    try:
        await polled([second], [1])
        await run_for([first, second], clock, before)
        assert first.services.lifecycle.poller.led > 0 and second.services.lifecycle.poller.led == 0
        for bot in (first, second):
            await bot.services.lifecycle.settle()
        await clock.advance(5 * 60)
        await asyncio.wait_for(pause.reached.wait(), 10)
        # the first replica is frozen; its term lapses and the second takes over within a poll
        for _ in range(2):
            await one_poll(second, clock)
        assert second.services.lifecycle.poller.led >= 1
        term = await second.services.leader_store.current("fleet")
        assert term is not None and term.owner == second.services.intake.owner
        assert len(alerts(slack)) == 1
        stops = console.calls.count("StopProjectVersion")
        assert stops == (1 if paused_at == "stop" else 0)
        # the first wakes up and carries on with what it had decided: the database refuses
        ticks = first.services.lifecycle.poller.ticks
        pause.resume.set()
        await polled([first], [ticks + 1])
        await first.services.lifecycle.settle()
        for _ in range(3):
            await run_for([first, second], clock, 5)
        assert len(alerts(slack)) == 1
        assert console.calls.count("StopProjectVersion") == stops
        assert not first.services.lifecycle.poller.leader.leads()
    finally:
        pause.resume.set()
        await second.stop()
        await first.stop()
