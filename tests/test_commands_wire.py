"""The `/cxr` surface's edges over the wire: forged or stale button values, and a listener
that fails (the one `@app.error` handler answers with one short apology, never a trace)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from bot.slack.blocks import UNEXPECTED_FAILURE
from tests import test_cost_guard_wire as wire
from tests.harness import VERSION_ARN
from tests.test_cost_guard_wire import ADMIN, NOBODY, OPS, started

# The cost guard's wire fixtures: a fake clock, moto's CloudWatch, a console-driven project.
clock, cloudwatch, console = wire.clock, wire.cloudwatch, wire.console


def alert_button(slack, value: str, user: str) -> dict:
    action = {
        "type": "button",
        "action_id": "cost_guard:stop",
        "block_id": "cost_guard:1",
        "text": {"type": "plain_text", "text": "Stop now"},
        "value": value,
    }
    message = {"ts": "1760000000.000001", "text": "Idle model", "blocks": []}
    return slack.block_action(action, message=message, channel=OPS, user=user)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("not-a-number", "I don't know that alert."),
        ("0", "I don't know that alert."),
        ("4711", "I don't know that alert any more."),
    ],
)
async def test_an_unknown_alert_button_is_an_unknown_alert(
    slack, tmp_path, console, clock, cloudwatch, value, expected
):
    console.status = "RUNNING"
    bot = await started(slack, tmp_path, console, clock)
    try:
        status, _ = await bot.post_action(alert_button(slack, value, ADMIN))
        assert status == 200
        await bot.drain()
        [answer] = slack.responses
        assert answer["text"] == expected and answer["response_type"] == "ephemeral"
        assert "StopProjectVersion" not in console.calls
    finally:
        await bot.stop()


async def test_a_forged_start_button_is_refused_as_expired(
    slack, tmp_path, console, clock, cloudwatch
):
    bot = await started(slack, tmp_path, console, clock)
    try:
        forged = {"arn": VERSION_ARN, "name": "cxr.2026-01-01", "min": "lots"}
        action = {
            "type": "button",
            "action_id": "lifecycle.start.confirm",
            "block_id": "lifecycle",
            "text": {"type": "plain_text", "text": "Start it"},
            "value": json.dumps(forged),
        }
        message = {"ts": "1760000000.000001", "text": "Start?", "blocks": []}
        payload = slack.block_action(action, message=message, channel=OPS, user=ADMIN)
        status, _ = await bot.post_action(payload)
        assert status == 200
        await bot.drain()
        [answer] = slack.responses
        assert answer["text"] == "This button no longer works. Run `/cxr start` again."
        assert "StartProjectVersion" not in console.calls
    finally:
        await bot.stop()


async def test_a_failing_listener_gets_one_apology_and_no_trace(
    slack, tmp_path, console, clock, cloudwatch
):
    bot = await started(slack, tmp_path, console, clock)
    try:
        # A row this code can't read (edited by hand, written by a newer release).
        other = sqlite3.connect(tmp_path / "cxr.db")
        other.execute(
            "INSERT INTO lifecycle_operations (kind, version_name, channel, user, started_at,"
            " status, phase, data) VALUES ('stop', 'cxr.old', 'C1', 'U1',"
            " '2026-01-01T00:00:00+00:00', 'STOPPED', 'following', '{not json')"
        )
        other.commit()
        other.close()
        status, _ = await bot.post_command(slack.slash_command("status", channel=OPS))
        assert status == 200
        await bot.drain()
        [answer] = slack.responses
        assert answer["text"] == UNEXPECTED_FAILURE and answer["response_type"] == "ephemeral"
        assert "Traceback" not in json.dumps(answer) and "json" not in json.dumps(answer)
    finally:
        await bot.stop()


async def test_a_non_admin_never_reaches_the_start_button(
    slack, tmp_path, console, clock, cloudwatch
):
    bot = await started(slack, tmp_path, console, clock)
    try:
        value = {"arn": VERSION_ARN, "name": "cxr.2026-01-01", "min": 1}
        action = {
            "type": "button",
            "action_id": "lifecycle.start.confirm",
            "block_id": "lifecycle",
            "text": {"type": "plain_text", "text": "Start it"},
            "value": json.dumps(value),
        }
        message = {"ts": "1760000000.000001", "text": "Start?", "blocks": []}
        payload = slack.block_action(action, message=message, channel=OPS, user=NOBODY)
        status, _ = await bot.post_action(payload)
        assert status == 200
        await bot.drain()
        [answer] = slack.responses
        assert "only the bot's admins can do that" in answer["text"]
        assert "StartProjectVersion" not in console.calls
        [entry] = [e for e in await bot.services.audit.recent(10) if e.actor == NOBODY]
        assert (entry.action, entry.target, entry.result) == (
            "start",
            "cxr.2026-01-01",
            "refused: not an admin",
        )
    finally:
        await bot.stop()
