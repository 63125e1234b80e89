"""HTTP mode against junk and slow clients, over real sockets: 400/401/408/413 quickly, never a
500 or a traceback; /healthz and Slack's events answered while 1,000 clients trickle."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from bot.slack.http_guard import SURGE
from bot.slack.signatures import check_signature
from tests.harness import SIGNING_SECRET, BotHarness, replies_in_thread
from tests.test_core_loop import CHANNEL, expect_detect, xray_jpeg


@pytest.fixture
async def bot(slack, rekognition, tmp_path):
    harness = BotHarness(
        slack,
        tmp_path / "cxr.db",
        rekognition=rekognition,
        http_header_timeout_s=0.5,
        http_body_timeout_s=0.5,
        http_max_body_kb=64,
        http_max_connections=200,
    )
    await harness.start()
    yield harness
    await harness.stop()


def port_of(bot: BotHarness) -> int:
    return int(bot.url.rsplit(":", 1)[1])


ROOT = Path(__file__).resolve().parent.parent
NESTED = b"[" * 20_000 + b"]" * 20_000


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"{not json", {"X-Slack-Request-Timestamp": "now", "X-Slack-Signature": "v0=x"}, 400),
        (NESTED, {}, 401),  # unsigned: never reaches a JSON parser
        (b"{}", {"X-Slack-Request-Timestamp": "12e9"}, 400),
        (b"{}", {"X-Slack-Request-Timestamp": "１２３４５"}, 400),  # Unicode digits
        (b"{}", {"X-Slack-Request-Timestamp": "-1"}, 400),
        (b"{}", {"X-Slack-Request-Timestamp": "9" * 40}, 400),
        (
            b"{}",
            {"X-Slack-Request-Timestamp": "1000000000", "X-Slack-Signature": "v0=" + "0" * 64},
            401,
        ),
        (b"{}", {"X-Slack-Signature": "v0=short"}, 401),
        (b"{}", {"X-Slack-Signature": "v0=" + "é" * 64}, 401),
        (b"{}", {"X-Slack-Signature": ""}, 401),
    ],
)
async def test_junk_gets_400_or_401_and_no_traceback(bot, caplog, body, headers, status):
    if "X-Slack-Request-Timestamp" not in headers:
        headers = {"X-Slack-Request-Timestamp": str(int(time.time())), **headers}
    headers.setdefault("X-Slack-Signature", "v0=" + "a" * 64)
    with caplog.at_level(logging.DEBUG):
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{bot.url}/slack/events",
                data=body,
                headers={"Content-Type": "application/json", **headers},
            ) as response,
        ):
            assert response.status == status
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)


async def test_signed_but_unreadable_bodies_get_400(bot, caplog):
    for body in (b"\xff\xfe not utf-8", NESTED):
        with caplog.at_level(logging.DEBUG):
            status, _ = await bot.send(body, "application/json", signature=_sign(body))
        assert status == 400
    assert not any(r.exc_info for r in caplog.records)


def _sign(body: bytes, timestamp: int | None = None) -> str:
    import hashlib
    import hmac

    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(SIGNING_SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256)
    return "v0=" + digest.hexdigest()


async def test_bodies_over_the_limit_get_413_before_they_are_read(bot):
    big = b'{"a": "' + b"x" * 70_000 + b'"}'
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{bot.url}/slack/events", data=big) as response:
            assert response.status == 413

        async def chunks():  # no Content-Length: the limit holds while reading
            for _ in range(20):
                yield b"x" * 8192

        async with session.post(f"{bot.url}/slack/events", data=chunks()) as response:
            assert response.status == 413


def test_the_signature_check_reads_only_bytes():
    body = b'{"type": "event_callback"}'
    now = 1_760_000_000
    good = "v0=" + __import__("hmac").new(b"s", b"v0:1760000000:" + body, "sha256").hexdigest()
    assert check_signature(b"s", "1760000000", good, body, now) is None
    assert check_signature(b"s", "1760000000", good, body + b" ", now).reason == "bad_signature"
    assert check_signature(b"s", "1760000000", good, body, now + 301).reason == "stale_timestamp"
    assert check_signature(b"s", " 1760000000", good, body, now).status == 400
    assert check_signature(b"s", None, good, body, now).status == 401


# --- slow clients ---------------------------------------------------------------------------
async def test_a_request_head_that_trickles_is_cut_off(bot):
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(bot))
    closed_after = None
    start = time.monotonic()
    try:
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                data = await asyncio.wait_for(reader.read(1), 0.1)
            except TimeoutError:
                continue
            if data == b"":
                closed_after = time.monotonic() - start
                break
    except ConnectionError:
        closed_after = time.monotonic() - start
    finally:
        writer.close()
    assert closed_after is not None, "the server waited for the whole trickled head"
    assert bot.pool.closed_by_reason.get("header_timeout", 0) >= 1


async def test_a_body_that_trickles_gets_408(bot):
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(bot))
    writer.write(
        b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{"
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(200), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408")


async def test_healthz_and_slack_events_answer_while_1000_clients_trickle(bot, slack, rekognition):
    """The flood runs in its own process; the pool is capped at 200 so that it must choose."""
    expect_detect(rekognition, pneumonia=0.9)
    flood = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.slow_clients",
        str(port_of(bot)),
        "1000",
        "8",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        ready = await asyncio.wait_for(flood.stdout.readline(), 20)
        assert ready == b"ready\n"
        await asyncio.sleep(1.0)  # the flood at full strength: thrown out, back again
        timeout = aiohttp.ClientTimeout(total=10)
        answered, misses_in_a_row, worst_run = 0, 0, 0
        for _ in range(10):  # a load balancer's health checks, each on a new connection
            ok = False
            try:
                async with (
                    aiohttp.ClientSession(timeout=timeout) as session,
                    session.get(f"{bot.url}/healthz") as response,
                ):
                    ok = response.status == 200
            except aiohttp.ClientError:
                pass
            answered += ok
            misses_in_a_row = 0 if ok else misses_in_a_row + 1
            worst_run = max(worst_run, misses_in_a_row)
            await asyncio.sleep(0.05)
        # The pool is 5x smaller than the flood: a miss is possible, an outage is not. A load
        # balancer marks a target unhealthy only after failed checks in a row (at least 2 by
        # default on the common ones), so never two in a row, and most checks answered.
        assert worst_run <= 1 and answered >= 7, (answered, worst_run)
        file = slack.add_file("a.jpeg", xray_jpeg())
        envelope = slack.file_share_envelope(CHANNEL, [file])
        status = 0
        for attempt in range(4):  # Slack's delivery and its retries
            try:
                retry = {"X-Slack-Retry-Num": str(attempt)} if attempt else {}
                status, _ = await asyncio.wait_for(bot.post_event(envelope, headers=retry), 10)
                if status == 200:
                    break
            except aiohttp.ClientError:
                continue
        assert status == 200
        await asyncio.wait_for(bot.drain(), 30)
        tally = json.loads(await asyncio.wait_for(flood.stdout.readline(), 20))
    finally:
        if flood.returncode is None:
            flood.kill()
        await flood.wait()
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert "a.jpeg: Pneumonia, 90.0%" in reply["text"]
    assert tally["clients_in"] == 1000 and tally["thrown_out"] > 0
    assert bot.pool.peak <= bot.pool.limit + SURGE + 1  # descriptors and memory stay bounded
    assert bot.pool.closed_by_reason.get("evicted", 0) > 0


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /slack/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /healthz HTTP/1.1\r\n" + b"X-Big: " + b"a" * 20_000 + b"\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(100)) + b"\r\n",
    ],
)
async def test_broken_http_gets_a_4xx_and_no_traceback(bot, caplog, raw):
    with caplog.at_level(logging.DEBUG):
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(bot))
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(100), 5)
        writer.close()
    assert re.match(rb"HTTP/1\.[01] (400|413|431) ", answer), answer
    assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.WARNING)


@pytest.mark.parametrize(
    "event",
    [
        {
            "type": "message",
            "subtype": "file_share",
            "channel": "C0CLINIC1",
            "ts": "1.2",
            "files": "x",
        },
        {
            "type": "message",
            "subtype": "file_share",
            "channel": "C0CLINIC1",
            "ts": "1.2",
            "files": ["F1", 7],
        },
        {"type": "message", "subtype": "file_share", "files": [{"id": "F1", "name": "a.png"}]},
        {
            "type": "message",
            "subtype": "file_share",
            "channel": "C0CLINIC1",
            "ts": "1.3",
            "files": [{"id": "F1", "name": ["a"], "size": "huge", "mimetype": None}],
        },
    ],
)
async def test_signed_events_of_odd_shapes_are_acknowledged_without_a_crash(
    bot, slack, caplog, event
):
    with caplog.at_level(logging.INFO):
        status, _ = await bot.post_event(slack.envelope(event))
        await bot.drain()
    assert status == 200
    assert not any(r.exc_info for r in caplog.records)


async def test_a_flood_of_junk_is_not_a_flood_of_log_lines(bot, caplog):
    with caplog.at_level(logging.INFO, logger="bot.slack.transports"):
        async with aiohttp.ClientSession() as session:
            for _ in range(50):
                async with session.post(f"{bot.url}/slack/events", data=b"{}") as response:
                    assert response.status == 401
    lines = [r for r in caplog.records if r.getMessage() == "http.rejected"]
    assert 1 <= len(lines) <= 10


async def test_the_deployed_bot_with_1024_open_files_keeps_answering_a_flood(
    slack, tmp_path, unused_tcp_port
):
    """`cxr-bot` as deployed, in a container whose open-files limit is 1,024 (soft and hard):
    1,000 slow clients would take every descriptor; the pool keeps the cap under the limit."""
    import resource

    from tests.test_main import http_mode_env

    def limit_open_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    env = http_mode_env(slack, tmp_path, unused_tcp_port)
    bot = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        cwd=tmp_path,
        env=env,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=limit_open_files,
    )
    flood = None
    url = f"http://127.0.0.1:{unused_tcp_port}/healthz"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):  # the interpreter and the model load
                try:
                    async with session.get(url) as response:
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
        flood = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.slow_clients",
            str(unused_tcp_port),
            "1000",
            "6",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        assert await asyncio.wait_for(flood.stdout.readline(), 20) == b"ready\n"
        await asyncio.sleep(1.0)
        answered = 0
        timeout = aiohttp.ClientTimeout(total=10)
        for _ in range(10):
            try:
                async with (
                    aiohttp.ClientSession(timeout=timeout) as session,
                    session.get(url) as response,
                ):
                    answered += response.status == 200
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        assert answered >= 9
        await asyncio.wait_for(flood.wait(), 30)
        bot.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(bot.communicate(), 30)
    finally:
        for process in (flood, bot):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
    assert b'"max_connections": 640' in stderr  # 1,024 less the reserve and the surge
    assert b"Traceback" not in stderr and b"Too many open files" not in stderr
    assert b"out of system resource" not in stderr  # asyncio's accept() never ran dry
