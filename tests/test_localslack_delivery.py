"""LocalSlack delivers events as Slack does (one socket per envelope, redelivery with Slack's
retry fields and headers), keeps message metadata, and the outbox posts numbered reply parts,
only the missing ones when asked to check the thread."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from bot.core.ports import Notice
from bot.localslack import LocalSlack
from bot.localslack.server import Redelivery
from bot.slack.blocks import Rendered, render_parts
from bot.slack.client import web_client
from bot.slack.outbox import REPLY_EVENT_TYPE, SlackOutbox, reply_metadata

FAST = Redelivery(ack_timeout_s=0.3, delays=(0.0, 0.1, 0.2))


async def test_each_envelope_goes_to_one_connection_and_unacked_ones_come_again():
    async with LocalSlack(redelivery=FAST) as slack, aiohttp.ClientSession() as session:
        received: list[list[dict]] = [[], []]

        async def connection(index: int, ack: bool) -> None:
            async with session.ws_connect(slack.url.replace("http", "ws") + "/socket") as ws:
                async for message in ws:
                    body = json.loads(message.data)
                    if body.get("type") == "hello":
                        continue
                    received[index].append(body)
                    if ack:
                        await ws.send_json({"envelope_id": body["envelope_id"]})

        readers = [
            asyncio.create_task(connection(0, True)),
            asyncio.create_task(connection(1, True)),
        ]
        await slack.wait_for(lambda: len(slack.sockets) == 2, what="two connections")
        deliveries = [slack.deliver(slack.envelope({"type": "app_mention"})) for _ in range(6)]
        await asyncio.gather(*(d.finished.wait() for d in deliveries))
        assert all(d.acked and len(d.attempts) == 1 for d in deliveries)
        assert len(received[0]) + len(received[1]) == 6  # once each, not once per socket
        assert received[0] and received[1]
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await slack.wait_for(lambda: not slack.sockets, what="the sockets to close")

        silent = asyncio.create_task(connection(0, False))
        await slack.wait_for(lambda: len(slack.sockets) == 1, what="a silent connection")
        received[0].clear()
        delivery = slack.deliver(slack.envelope({"type": "app_mention"}))
        await asyncio.wait_for(delivery.finished.wait(), 5)
        silent.cancel()
        assert not delivery.acked
        assert [e["retry_attempt"] for e in received[0]] == [0, 1, 2, 3]
        assert [e["retry_reason"] for e in received[0]] == ["", "timeout", "timeout", "timeout"]
        assert {e["payload"]["event_id"] for e in received[0]} == {delivery.event_id}


async def test_http_deliveries_are_retried_with_slacks_headers_until_2xx():
    seen: list[dict[str, str]] = []

    async def events(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(status=503 if len(seen) < 3 else 200)

    app = web.Application()
    app.router.add_post("/slack/events", events)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with LocalSlack(
            redelivery=FAST,
            events_url=f"http://127.0.0.1:{port}/slack/events",
            signing_secret="secret",
        ) as slack:
            delivery = slack.deliver(slack.envelope({"type": "app_mention"}))
            await asyncio.wait_for(delivery.finished.wait(), 5)
    finally:
        await runner.cleanup()
    assert delivery.acked and [a.status for a in delivery.attempts] == [503, 503, 200]
    assert "X-Slack-Retry-Num" not in seen[0]
    assert [(h["X-Slack-Retry-Num"], h["X-Slack-Retry-Reason"]) for h in seen[1:]] == [
        ("1", "http_error"),
        ("2", "http_error"),
    ]
    assert all(h["X-Slack-Signature"].startswith("v0=") for h in seen)


@dataclass
class ThreePartNotice(Notice):
    """A reply long enough to need three messages."""


@render_parts.register
def _three_parts(notice: ThreePartNotice) -> list[Rendered]:
    return [Rendered(text=f"part {n}") for n in (1, 2, 3)]


async def test_a_reply_is_numbered_and_only_missing_parts_are_posted_again(slack):
    outbox = SlackOutbox(web_client(slack.bot_token, slack.api_url))
    root = slack.file_share_envelope("C1", [])["event"]["ts"]
    key = f"C1:{root}"
    client = outbox.client
    for number in (1, 3):  # a previous run got parts 1 and 3 out, then died
        await client.chat_postMessage(
            channel="C1",
            text=f"part {number}",
            thread_ts=root,
            metadata=reply_metadata(key, number),
        )
    await client.chat_postMessage(  # another upload's reply in the same thread
        channel="C1", text="other", thread_ts=root, metadata=reply_metadata("C1:9.9", 2)
    )
    posted = await outbox.post_reply("C1", root, ThreePartNotice(), key=key, check_thread=True)
    assert posted == 1
    thread = [m for m in slack.messages["C1"] if m.get("thread_ts") == root]
    ours = [m for m in thread if m["metadata"]["event_payload"]["upload"] == key]
    assert sorted(m["text"] for m in ours) == ["part 1", "part 2", "part 3"]
    assert ours[-1]["metadata"] == {
        "event_type": REPLY_EVENT_TYPE,
        "event_payload": {"upload": key, "part": 2},
    }
    # without include_all_metadata, Slack leaves metadata out
    plain = await client.conversations_replies(channel="C1", ts=root)
    assert all("metadata" not in m for m in plain["messages"])
    # a fresh reply (no crash behind it) posts every part without reading the thread
    reads = len(slack.calls_to("conversations.replies"))
    assert (
        await outbox.post_reply("C1", root, ThreePartNotice(), key="C1:2.0", check_thread=False)
        == 3
    )
    assert len(slack.calls_to("conversations.replies")) == reads
