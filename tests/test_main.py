"""`cxr-bot` as deployed: HTTP mode from the environment, /healthz up, a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from bot.ml.model_card import load_model_card

BUNDLED = load_model_card()

ROOT = Path(__file__).resolve().parent.parent


def http_mode_env(slack, home: Path, port: int) -> dict[str, str]:
    """The environment of `python -m bot` in HTTP mode against the stand-in, on `port`."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "PYTHONPATH": str(ROOT),
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": "secret",
        "SLACK_API_URL": slack.api_url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
    }


async def test_http_mode_serves_healthz_and_stops_on_sigterm(slack, tmp_path, unused_tcp_port):
    env = http_mode_env(slack, tmp_path, unused_tcp_port)
    bot = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        body = None
        async with aiohttp.ClientSession() as session:
            for _ in range(300):  # up to 30 s for the interpreter and the model to load
                try:
                    async with session.get(f"http://127.0.0.1:{unused_tcp_port}/healthz") as r:
                        body = await r.json()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
        assert body is not None, "the bot never served /healthz"
        assert body["status"] == "ok" and body["transport"] == "http"
        assert body["model"] == f"local {BUNDLED.name} {BUNDLED.version}"
        bot.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(bot.communicate(), 30)
    finally:
        if bot.returncode is None:
            bot.kill()
            await bot.wait()
    assert bot.returncode == 0
    assert b'"event": "bot.started"' in stderr and b'"event": "bot.stopping"' in stderr
    assert b"Traceback" not in stderr


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
async def test_socket_mode_stops_within_10_s_while_slack_is_unreachable(
    tmp_path, unused_tcp_port, unused_tcp_port_factory, stop_signal
):
    nowhere = unused_tcp_port_factory()  # nothing listens there: Slack is down
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_APP_TOKEN": "xapp-test",
        "SLACK_API_URL": f"http://127.0.0.1:{nowhere}/api/",
        "PORT": str(unused_tcp_port),
        "HOST": "127.0.0.1",
    }
    bot = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        body = None
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                try:
                    async with session.get(f"http://127.0.0.1:{unused_tcp_port}/healthz") as r:
                        body = await r.json()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
        assert body is not None, "the bot never served /healthz"
        assert body["socket_connected"] is False
        await asyncio.sleep(1)  # inside slack_sdk's reconnect loop by now
        bot.send_signal(stop_signal)
        _, stderr = await asyncio.wait_for(bot.communicate(), 10)
    finally:
        if bot.returncode is None:
            bot.kill()
            await bot.wait()
    assert bot.returncode == 0
    assert b'"event": "bot.stopping"' in stderr
