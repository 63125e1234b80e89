"""The bot over the wire with its state in PostgreSQL (CXR_DATABASE_URL): same answers, once,
and no SQLite file made."""

from __future__ import annotations

import pytest

from tests.harness import BotHarness, replies_in_thread
from tests.synthetic import chest_xray, jpeg_bytes
from tests.test_core_loop import CHANNEL, expect_detect


@pytest.fixture
async def bot(slack, rekognition, tmp_path, postgres_url):
    harness = BotHarness(
        slack, tmp_path / "cxr.db", rekognition=rekognition, cxr_database_url=postgres_url
    )
    await harness.start()
    yield harness
    await harness.stop()


async def test_verdict_once_with_state_in_postgres_and_no_sqlite_file(
    bot, slack, rekognition, tmp_path, postgres_url
):
    expect_detect(rekognition, pneumonia=0.971)
    envelope = await bot.share(CHANNEL, [("a.jpeg", jpeg_bytes(chest_xray(seed=1)))])
    status, _ = await bot.post_event(envelope, headers={"X-Slack-Retry-Num": "1"})
    assert status == 200
    await bot.drain()
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert "Pneumonia, 97.1%" in reply["text"]
    assert not list(tmp_path.glob("cxr.db*")), "no SQLite file with CXR_DATABASE_URL"
    row = await bot.services.db.run(
        lambda c: c.execute(
            "SELECT state, user FROM uploads WHERE ts = ?", (envelope["event"]["ts"],)
        ).fetchone()
    )
    assert row["state"] == "answered" and row["user"] == envelope["event"]["user"]
    assert await bot.services.uploads.classified_count("rekognition", *_today(bot)) == 1
    rekognition.stubber.assert_no_pending_responses()


def _today(bot):
    from datetime import timedelta

    now = bot.services.clock.now()
    return now - timedelta(hours=1), now + timedelta(hours=1)


def test_sqlite_needs_no_psycopg():
    """`make run` installs no extras: nothing on the SQLite path may import psycopg."""
    import subprocess
    import sys

    code = (
        "import sys, bot.main, bot.services, bot.slack.app, bot.shell.session;"
        "print('psycopg' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
