"""Two instances on one database (a rolling deploy): one poller acts, the other waits, and
nothing is alerted or stopped twice; when the leader stops, the other takes over."""

from __future__ import annotations

import asyncio

from tests import test_cost_guard_wire as wire
from tests.harness import BotHarness
from tests.test_cost_guard_wire import OPS, alerts, bot_settings, thread

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
        before = [b.services.lifecycle.poller.ticks for b in bots]
        await clock.advance(step)
        await polled(bots, [n + 1 for n in before])
        for bot in bots:
            await bot.services.lifecycle.settle()


async def test_two_instances_on_one_database_alert_and_stop_once(
    slack, tmp_path, console, clock, cloudwatch
):
    console.status = "RUNNING"
    settings = bot_settings(cxr_auto_stop_minutes=60, cxr_sole_client=True)
    first = await BotHarness(
        slack, tmp_path / "cxr.db", rekognition=console.client, clock=clock, **settings
    ).start()
    await polled([first], [1])
    second = await BotHarness(
        slack, tmp_path / "cxr.db", rekognition=console.client, clock=clock, **settings
    ).start()
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


def gone_pid() -> int:
    """The pid of a process that has ended (a leader killed with kill -9, say)."""
    import subprocess
    import sys

    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(child.stdout)


def leader_lease(path, owner: str, hours: float = 1) -> None:
    """A leader lease another process left in the database, running for `hours` more."""
    import sqlite3
    import time

    from bot.state.db import Database

    Database(path).close()  # the schema
    conn = sqlite3.connect(path)
    now = time.time()
    conn.execute(
        "INSERT INTO leases (key, owner, expires_at, acquired_at, renewed_at)"
        " VALUES ('leader:fleet', ?, ?, ?, ?)",
        (owner, now + hours * 3600 + 10 * 86400, now, now),
    )
    conn.commit()
    conn.close()


async def test_a_killed_leader_on_this_host_is_taken_over_at_once(
    slack, tmp_path, console, clock, cloudwatch
):
    import socket

    leader_lease(tmp_path / "cxr.db", f"{socket.gethostname()}:{gone_pid()}:killed")
    console.status = "RUNNING"
    bot = await BotHarness(
        slack, tmp_path / "cxr.db", rekognition=console.client, clock=clock, **bot_settings()
    ).start()
    try:
        await polled([bot], [1])
        await run_for([bot], clock, 30)
        assert bot.services.lifecycle.poller.led > 0
        assert len(alerts(slack)) == 1
    finally:
        await bot.stop()


async def test_a_leader_on_another_host_is_waited_for(slack, tmp_path, console, clock, cloudwatch):
    leader_lease(tmp_path / "cxr.db", "another-host:4242:alive")
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
        [op] = bot.services.store.operations.open()
        assert op.id == op_id and op.data.get("unexpected") is None  # not judged
        conn.execute("DELETE FROM leases WHERE key = ?", (f"operation:{op_id}",))  # B is gone
        conn.commit()
        conn.close()
        await run_for([bot], clock, 15)
        assert bot.services.store.operations.open() == []
        [failed] = [m["text"] for m in slack.bot_messages(OPS) if "did not stop" in m["text"]]
        assert "never reached Rekognition" in failed
    finally:
        await bot.stop()
