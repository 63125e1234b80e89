"""Two and three `cxr-bot` processes on one PostgreSQL behind a load balancer, driven from the
outside like Slack: every upload is answered exactly once through a burst spread over the
replicas, a retry delivered to another replica, a replica killed mid-burst and a rolling
restart."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from slack_sdk.signature import SignatureVerifier

from bot.localslack import LocalSlack
from bot.localslack.server import Redelivery
from tests.replica_fleet import SIGNING_SECRET, Balancer, ReplicaFleet, reply_parts
from tests.synthetic import chest_xray, jpeg_bytes

CHANNEL = "C0CLINIC1"
LEASE_S = 3  # a killed replica's uploads are resumed about this long after its last renewal
IMAGE = jpeg_bytes(chest_xray(seed=3, size=(640, 700)))


@pytest.fixture
async def cluster(postgres_url, tmp_path):
    balancer = await Balancer([]).start()
    slack = LocalSlack(
        events_url=f"{balancer.url}/slack/events",
        signing_secret=SIGNING_SECRET,
        redelivery=Redelivery.compressed(3),
    )
    await slack.start()
    fleet = ReplicaFleet(
        slack.api_url,
        slack.bot_token,
        postgres_url,
        tmp_path,
        extra_env={"CXR_UPLOAD_LEASE_SECONDS": str(LEASE_S), "CXR_CONCURRENCY": "2"},
    )
    try:
        yield slack, fleet, balancer
    finally:
        await fleet.close()
        await balancer.close()
        await slack.stop()


def share(slack: LocalSlack, n: int) -> list[dict]:
    return [
        slack.file_share_envelope(CHANNEL, [slack.add_file(f"xray-{i}.jpeg", IMAGE)])
        for i in range(n)
    ]


async def answered_once(slack: LocalSlack, envelopes: list[dict], within: float) -> None:
    """Wait until every upload has its reply, then check none was answered twice."""
    keys = {f"{CHANNEL}:{e['event']['ts']}" for e in envelopes}

    def all_answered() -> bool:
        parts = reply_parts(slack.bot_messages(CHANNEL))
        return keys <= {key for key, part in parts if part == 1}

    await slack.wait_for(all_answered, within=within, what="a reply to every upload")
    await asyncio.sleep(LEASE_S * 1.5)  # room for a late duplicate to show up, if any would
    parts = reply_parts(slack.bot_messages(CHANNEL))
    doubled = {key: n for key, n in parts.items() if n > 1}
    assert not doubled, f"answered twice: {doubled}"
    assert {key for key, _ in parts} == keys, "every upload answered, and only those"


async def post_signed(url: str, envelope: dict, retry: int | None = None) -> int:
    body = json.dumps(envelope)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": SignatureVerifier(SIGNING_SECRET).generate_signature(
            timestamp=timestamp, body=body
        ),
    }
    if retry:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/slack/events", data=body, headers=headers) as response,
    ):
        return response.status


async def test_a_burst_over_three_replicas_with_one_killed_midway_is_answered_once(cluster):
    slack, fleet, balancer = cluster
    balancer.backends[:] = await fleet.start(3)
    slack.download_gate = asyncio.Event()  # hold the work so the kill lands mid-burst
    envelopes = share(slack, 30)
    deliveries = [slack.deliver(envelope) for envelope in envelopes]
    await asyncio.wait_for(asyncio.gather(*(d.finished.wait() for d in deliveries)), 60)
    assert all(d.acked for d in deliveries)
    assert set(balancer.served) == {"r0", "r1", "r2"}, balancer.served
    victim = fleet.replicas[0]
    await fleet.kill(victim)
    slack.download_gate.set()
    await answered_once(slack, envelopes, within=90)
    survivors = "".join(r.log_text() for r in fleet.replicas[1:])
    assert '"upload.resumed"' in survivors, "the killed replica's uploads were taken over"


async def test_a_retry_on_another_replica_and_a_rolling_restart_answer_once(cluster):
    slack, fleet, balancer = cluster
    a, b = await fleet.start(2)
    balancer.backends[:] = [a, b]
    [first] = share(slack, 1)
    assert await post_signed(a.url, first) == 200
    assert await post_signed(b.url, first, retry=1) == 200  # Slack's retry, to the other one
    await answered_once(slack, [first], within=60)

    envelopes = share(slack, 8)
    deliveries = [slack.deliver(envelope) for envelope in envelopes[:4]]
    assert await fleet.terminate(a) == 0  # rolling restart: one replica at a time
    deliveries += [slack.deliver(envelope) for envelope in envelopes[4:]]
    await fleet.launch(a)
    assert await fleet.terminate(b) == 0
    await fleet.launch(b)
    await asyncio.wait_for(asyncio.gather(*(d.finished.wait() for d in deliveries)), 60)
    assert all(d.acked for d in deliveries)
    await answered_once(slack, [first, *envelopes], within=90)
