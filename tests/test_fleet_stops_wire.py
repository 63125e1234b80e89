"""Stops over the wire: confirmed at STOPPED, and reported when they don't take effect or
are slow (the real bot, LocalSlack, a console-driven Rekognition, a fake clock)."""

from __future__ import annotations

from datetime import timedelta

from bot.core.pricing import duration
from tests import test_cost_guard_wire as wire
from tests.test_cost_guard_wire import alerts, run_for, started, thread

clock, cloudwatch, console = wire.clock, wire.cloudwatch, wire.console


async def test_a_stop_that_does_not_take_effect_is_reported(
    slack, tmp_path, console, clock, cloudwatch
):
    console.status = "RUNNING"
    bot = await started(
        slack, tmp_path, console, clock, cxr_auto_stop_minutes=60, cxr_sole_client=True
    )
    try:
        await run_for(bot, clock, 60)
        assert console.calls.count("StopProjectVersion") == 1
        console.status = "RUNNING"  # the stop didn't take: the model is still up
        await run_for(bot, clock, 15)  # a few polls (DescribeProjectVersions can lag)
        [alert] = alerts(slack)
        [failed] = [m["text"] for m in thread(slack, alert["ts"]) if "couldn't stop" in m["text"]]
        assert "the stop did not take effect: it is RUNNING" in failed
        assert not [m for m in thread(slack, alert["ts"]) if m["text"].startswith("Stopped")]
        assert await bot.services.runs.current(wire.VERSION_ARN) is not None  # still billed
    finally:
        await bot.stop()


async def test_a_slow_stop_is_reported_once_and_confirmed_later(
    slack, tmp_path, console, clock, cloudwatch
):
    console.status = "RUNNING"
    bot = await started(
        slack, tmp_path, console, clock, cxr_auto_stop_minutes=60, cxr_sole_client=True
    )
    try:
        await run_for(bot, clock, 60)
        assert console.status == "STOPPING"
        await run_for(bot, clock, 45)  # STOPPING for 45 minutes
        # the auto-stop is an operation like any other: /cxr status shows it in flight
        status, _ = await bot.post_command(slack.slash_command("status", channel="C0LAB0001"))
        assert status == 200
        await bot.drain()
        [answer] = [r["text"] for r in slack.responses if "Serving:" in r["text"]]
        assert "stop cxr.2026-01-01 (following), asked by cost-guard" in answer
        [alert] = alerts(slack)
        slow = [m["text"] for m in thread(slack, alert["ts"]) if "still STOPPING" in m["text"]]
        assert len(slow) == 1 and "after 30 min" in slow[0]
        console.status = "STOPPED"
        await run_for(bot, clock, 5)
        [stopped] = [m for m in thread(slack, alert["ts"]) if m["text"].startswith("Stopped")]
        # billed from 09:00 until STOPPED was seen (10:45 at the earliest), not until 10:00
        run = await bot.services.runs.latest(wire.VERSION_ARN, wire.T0)
        assert run is not None and run.started_at == wire.T0
        assert wire.T0 + timedelta(minutes=105) <= run.stopped_at <= clock.now()
        assert f"It ran {duration(run.seconds(clock.now()))}" in stopped["text"]
        assert console.calls.count("StopProjectVersion") == 1
    finally:
        await bot.stop()
