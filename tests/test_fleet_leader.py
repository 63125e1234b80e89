"""Two instances on one database (a rolling deploy): one poller acts, the other waits, and
nothing is alerted or stopped twice; when the leader stops, the other takes over."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from tests import test_cost_guard_wire as wire
from tests.harness import BotHarness, open_database
from tests.test_cost_guard_wire import ADMIN, OPS, alerts, bot_settings, press, thread

clock, cloudwatch, console = wire.clock, wire.cloudwatch, wire.console


async def polled(bots: list[BotHarness], counts: list[int], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    for bot, count in zip(bots, counts, strict=True):
        poller = bot.services.lifecycle.poller
        while poller.ticks < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"a poller made {poller.ticks} polls, not {count}")
            await asyncio.sleep(0.002)


async def run_for(bots: list[BotHarness], clock, minutes: int) -> None:
    step = bots[0].services.cost_guard.config.interval.total_seconds()
    for _ in range(round(minutes * 60 / step)):
        for bot in bots:  # asleep on the clock, so that the advance wakes each poller
            await bot.services.lifecycle.settle()
        before = [b.services.lifecycle.poller.ticks for b in bots]
        await clock.advance(step)
        await polled(bots, [n + 1 for n in before])
        for bot in bots:
            await bot.services.lifecycle.settle()


async def two_instances(
    slack, tmp_path, console, clock, **settings: Any
) -> tuple[BotHarness, BotHarness]:
    """Two bots on one database; the first has polled once, so it leads."""
    first = await BotHarness(
        slack, tmp_path / "cxr.db", rekognition=console.client, clock=clock, **settings
    ).start()
    await polled([first], [1])
    second = await BotHarness(
        slack, tmp_path / "cxr.db", rekognition=console.client, clock=clock, **settings
    ).start()
    return first, second


async def test_two_instances_on_one_database_alert_and_stop_once(
    slack, tmp_path, console, clock, cloudwatch
):
    console.status = "RUNNING"
    settings = bot_settings(cxr_auto_stop_minutes=60, cxr_sole_client=True)
    first, second = await two_instances(slack, tmp_path, console, clock, **settings)
    bots = [first, second]
    try:
        await polled([second], [1])
        await run_for(bots, clock, 60)  # idle alert at 30 min, auto-stop at 60
        assert len(alerts(slack)) == 1
        assert console.calls.count("StopProjectVersion") == 1
        assert first.services.lifecycle.poller.led > 0 and second.services.lifecycle.poller.led == 0
        # the leader goes away (the old release in a rolling deploy): the other takes over
        await first.stop()
        bots = [second]
        console.status = "STOPPED"
        await run_for(bots, clock, 5)
        assert second.services.lifecycle.poller.led > 0
        [alert] = alerts(slack)
        notes = [m["text"] for m in thread(slack, alert["ts"]) if m["text"].startswith("Stopped")]
        assert len(notes) == 1  # the stop is confirmed once, by the new leader
        assert console.calls.count("StopProjectVersion") == 1
        assert len([m for m in slack.bot_messages(OPS) if not m.get("thread_ts")]) == 1
    finally:
        for bot in bots:
            await bot.stop()
        await first.stop()  # idempotent


def leader_term(path, owner: str, expires_at: datetime, epoch: int = 7) -> None:
    """A leader term another replica left in the database, running until `expires_at`."""
    import sqlite3

    open_database(path).close()  # the schema
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO leader_terms (name, owner, epoch, expires_at, acquired_at)"
        " VALUES ('fleet', ?, ?, ?, ?)",
        (owner, epoch, expires_at.timestamp(), expires_at.timestamp() - 60),
    )
    conn.commit()
    conn.close()


async def test_a_dead_leader_is_taken_over_within_one_poll_interval(
    slack, tmp_path, console, clock, cloudwatch
):
    """The leader died just after renewing (its term runs ¾ of a poll interval): another
    replica leads by its next poll, under the next epoch."""
    leader_term(tmp_path / "cxr.db", "another-host:4242:killed", clock.now() + timedelta(minutes=3))
    console.status = "RUNNING"
    bot = await BotHarness(
        slack, tmp_path / "cxr.db", rekognition=console.client, clock=clock, **bot_settings()
    ).start()
    try:
        await polled([bot], [1])
        assert bot.services.lifecycle.poller.led == 0  # the dead leader's term still runs
        await run_for([bot], clock, 5)  # one poll interval later
        assert bot.services.lifecycle.poller.led == 1
        term = await bot.services.leader_store.current("fleet")
        assert term is not None and term.epoch == 8 and term.owner == bot.services.intake.owner
        await run_for([bot], clock, 30)
        assert len(alerts(slack)) == 1
    finally:
        await bot.stop()


async def test_a_leader_on_another_host_is_waited_for(slack, tmp_path, console, clock, cloudwatch):
    leader_term(tmp_path / "cxr.db", "another-host:4242:alive", clock.now() + timedelta(days=1))
    console.status = "RUNNING"
    bot = await BotHarness(
        slack, tmp_path / "cxr.db", rekognition=console.client, clock=clock, **bot_settings()
    ).start()
    try:
        await polled([bot], [1])
        await run_for([bot], clock, 30)
        assert bot.services.lifecycle.poller.led == 0 and alerts(slack) == []
    finally:
        await bot.stop()


async def test_an_operation_another_instance_is_commanding_is_left_alone(
    slack, tmp_path, console, clock, cloudwatch
):
    """Instance B claimed a stop and is still calling AWS (it holds the operation's lease):
    the leader's poller doesn't judge it until B is done (or B's lease lapses)."""
    import sqlite3

    console.status = "RUNNING"
    bot = await BotHarness(
        slack, tmp_path / "cxr.db", rekognition=console.client, clock=clock, **bot_settings()
    ).start()
    try:
        await polled([bot], [1])
        conn = sqlite3.connect(tmp_path / "cxr.db")
        op_id = conn.execute(
            "INSERT INTO lifecycle_operations (kind, version_name, version_arn, channel, user,"
            " started_at, status, phase, data) VALUES ('stop', 'cxr.2026-01-01', ?, ?,"
            " 'U0ADMIN01', ?, 'RUNNING', 'requested', '{}')",
            (wire.VERSION_ARN, OPS, clock.now().isoformat()),
        ).lastrowid
        far = clock.now().timestamp() + 3600
        conn.execute(
            "INSERT INTO leases (key, owner, expires_at, acquired_at, renewed_at)"
            " VALUES (?, 'instance-b:7:x', ?, ?, ?)",
            (f"operation:{op_id}", far, far, far),
        )
        conn.commit()
        bot.services.lifecycle.poller.follow()
        await run_for([bot], clock, 10)
        [op] = await bot.services.store.operations.open()
        assert op.id == op_id and op.data.get("unexpected") is None  # not judged
        conn.execute("DELETE FROM leases WHERE key = ?", (f"operation:{op_id}",))  # B is gone
        conn.commit()
        conn.close()
        await run_for([bot], clock, 15)
        assert await bot.services.store.operations.open() == []
        [failed] = [m["text"] for m in slack.bot_messages(OPS) if "did not stop" in m["text"]]
        assert "never reached Rekognition" in failed
    finally:
        await bot.stop()


async def test_stop_now_pressed_on_the_replica_that_does_not_lead_stops_once(
    slack, tmp_path, console, clock, cloudwatch
):
    console.status = "RUNNING"
    settings = bot_settings()
    first, second = await two_instances(slack, tmp_path, console, clock, **settings)
    bots = [first, second]
    try:
        await polled([second], [1])
        await run_for(bots, clock, 30)  # the leader (the first) alerts at 30 min idle
        [alert] = alerts(slack)
        assert second.services.lifecycle.poller.led == 0
        # the load balancer hands the press to the follower: it acts for the admin all the same
        status, _ = await second.post_action(press(slack, alert, "Stop now", ADMIN))
        assert status == 200
        assert console.calls.count("StopProjectVersion") == 1
        console.status = "STOPPED"
        await run_for(bots, clock, 5)  # the leader's poll confirms it and reports once
        notes = [m["text"] for m in thread(slack, alert["ts"]) if m["text"].startswith("Stopped")]
        assert len(notes) == 1
        assert console.calls.count("StopProjectVersion") == 1
    finally:
        for bot in bots:
            await bot.stop()
