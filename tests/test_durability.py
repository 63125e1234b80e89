"""Nothing lost, nothing doubled, at the wire: crashes after the ack or after the reply, a
database locked by another process or full, a second instance on the same database, and a
Slack outage during downloads."""

from __future__ import annotations

import asyncio
import sqlite3

import aiohttp
from botocore.stub import ANY

from bot.core.clock import FakeClock
from bot.core.labels import Label, ModelInfo, Prediction
from bot.localslack import LocalSlack
from bot.slack.outbox import REPLY_EVENT_TYPE
from tests.harness import VERSION_ARN, BotHarness, labels_response, replies_in_thread
from tests.synthetic import chest_xray, jpeg_bytes

CHANNEL = "C0CLINIC1"
DETECT_PARAMS = {"ProjectVersionArn": VERSION_ARN, "Image": {"Bytes": ANY}, "MinConfidence": 0}


def expect_detect(rekognition, pneumonia: float, times: int = 1) -> None:
    for _ in range(times):
        rekognition.stubber.add_response(
            "detect_custom_labels", labels_response(pneumonia), DETECT_PARAMS
        )


class StillModel:
    """A local model that always answers Normal 90% (no cost guard runs beside it)."""

    max_side = 512
    model = ModelInfo(kind="local", name="cxr-cnn", version="v1")

    async def classify(self, image) -> Prediction:
        return Prediction(scores={Label.NORMAL: 0.9, Label.PNEUMONIA: 0.1}, model=self.model)


def xray() -> bytes:
    return jpeg_bytes(chest_xray(seed=3, size=(400, 400)))


def new_envelope(slack: LocalSlack, name: str = "a.jpeg") -> dict:
    return slack.file_share_envelope(CHANNEL, [slack.add_file(name, xray())])


def replies(slack: LocalSlack, envelope: dict) -> list[dict]:
    return replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])


async def wait_answered(slack: LocalSlack, envelopes: list[dict], within: float = 20) -> None:
    await slack.wait_for(
        lambda: all(replies(slack, e) for e in envelopes), within, "every upload's reply"
    )


async def test_an_upload_acked_just_before_a_crash_is_answered_after_restart(
    slack, rekognition, tmp_path
):
    """The claim is written before the 200: a crash right after the ack loses nothing."""
    db = tmp_path / "cxr.db"
    first = await BotHarness(slack, db, rekognition=rekognition, cxr_upload_lease_seconds=1).start()
    first.services.intake.start = lambda upload, **kw: None  # dies before any work begins
    envelopes = [new_envelope(slack, f"x{i}.jpeg") for i in range(3)]
    for envelope in envelopes:
        assert (await first.post_event(envelope))[0] == 200
    await first.drain_listeners()
    await first.crash()
    assert not slack.calls_to("chat.postMessage")

    expect_detect(rekognition, 0.9, times=3)
    second = await BotHarness(
        slack, db, rekognition=rekognition, cxr_upload_lease_seconds=1
    ).start()
    try:
        await wait_answered(slack, envelopes)
        await second.drain()
    finally:
        await second.stop()
    assert all(len(replies(slack, e)) == 1 for e in envelopes)


async def test_a_crash_between_the_reply_and_its_record_gives_no_second_reply(
    slack, rekognition, tmp_path
):
    """Slack accepted the reply, the bot died before recording it: the resumed upload reads
    its thread (with metadata), finds its reply there and posts nothing more."""
    db = tmp_path / "cxr.db"
    first = await BotHarness(slack, db, rekognition=rekognition, cxr_upload_lease_seconds=1).start()
    posted, dead = asyncio.Event(), asyncio.Event()

    async def die_after_the_post(call, body):
        if call.method == "chat.postMessage" and body.get("ok"):
            posted.set()
            await dead.wait()  # the bot never hears back

    slack.listeners.append(die_after_the_post)
    expect_detect(rekognition, 0.9)
    envelope = new_envelope(slack)
    assert (await first.post_event(envelope))[0] == 200
    await asyncio.wait_for(posted.wait(), 20)
    slack.listeners.remove(die_after_the_post)
    await first.crash()
    dead.set()

    expect_detect(rekognition, 0.9)
    second = await BotHarness(
        slack, db, rekognition=rekognition, cxr_upload_lease_seconds=1
    ).start()
    try:
        await slack.wait_for(
            lambda: bool(slack.calls_to("conversations.replies")), 20, "the thread read"
        )
        await second.drain()
        for _ in range(200):  # the record follows the reply: look every 50 ms, up to 10 s
            if await second.services.uploads.is_answered(CHANNEL, envelope["event"]["ts"]):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the upload was not recorded as answered")
    finally:
        await second.stop()
    [reply] = replies(slack, envelope)
    assert reply["metadata"] == {
        "event_type": REPLY_EVENT_TYPE,
        "event_payload": {"upload": f"{CHANNEL}:{envelope['event']['ts']}", "part": 1},
    }
    [read] = slack.calls_to("conversations.replies")
    assert read.params["include_all_metadata"] in ("1", "true", "True")


async def test_a_locked_database_gets_503_and_healthz_still_answers(slack, tmp_path, caplog):
    """Another process holds the write lock: the claim gives up after about 2 s with a 503
    (Slack retries), /healthz keeps answering meanwhile, and the retry is answered once."""
    db = tmp_path / "cxr.db"
    bot = await BotHarness(slack, db, local=StillModel()).start()
    other = sqlite3.connect(db, isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")  # the write lock, held
        envelope = new_envelope(slack)
        claim = asyncio.create_task(bot.post_event(envelope))
        await asyncio.sleep(0.2)  # the claim is waiting on the lock now
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{bot.url}/healthz") as response,
        ):
            assert response.status == 200  # answered while the claim waits on the lock
        assert not claim.done()
        status, _ = await claim
        assert status == 503
        [loud] = [r for r in caplog.records if r.msg.startswith("upload.claim_failed")]
        assert loud.levelname == "ERROR" and "NOT acknowledged" in loud.msg
        assert "database is locked" in loud.error or "no answer from the database" in loud.error
        # /cxr is acknowledged without waiting on the database (the claim is for uploads)
        status, body = await bot.post_command(slack.slash_command("help"))
        assert status == 200 and "/cxr status" in body
        other.execute("ROLLBACK")
        status, _ = await bot.post_event(
            envelope, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_error"}
        )
        assert status == 200
        await bot.drain()
    finally:
        other.close()
        await bot.stop()
    assert len(replies(slack, envelope)) == 1


async def test_a_full_disk_refuses_the_claim_until_space_returns(slack, rekognition, tmp_path):
    """SQLITE_FULL on the claim: 503, nothing acknowledged; once there is room, Slack's retry
    is claimed and answered."""
    bot = await BotHarness(slack, tmp_path / "cxr.db", rekognition=rekognition).start()
    try:
        db = bot.services.db
        pages = await db.run(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
        await db.run(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"))  # the disk is full
        envelopes = [new_envelope(slack, f"f{i}.jpeg") for i in range(40)]
        statuses = [(await bot.post_event(e))[0] for e in envelopes]
        assert 503 in statuses  # the file could not grow: refused, not silently dropped
        await db.run(lambda c: c.execute("PRAGMA max_page_count = 1073741823"))  # space is back
        refused = [e for e, status in zip(envelopes, statuses, strict=True) if status == 503]
        expect_detect(rekognition, 0.9, times=len(envelopes))
        for envelope in refused:
            status, _ = await bot.post_event(envelope, headers={"X-Slack-Retry-Num": "1"})
            assert status == 200
        await bot.drain()
    finally:
        await bot.stop()
    assert all(len(replies(slack, e)) == 1 for e in envelopes)


async def test_a_second_instance_leaves_the_first_ones_uploads_alone(slack, rekognition, tmp_path):
    """Rolling deploy: the new instance starts while the old one has 16 uploads in work; it
    resumes none of them (their leases are alive); when the old one stops, it hands back
    what it has not finished and the new one answers those, each once."""
    db = tmp_path / "cxr.db"
    old = await BotHarness(slack, db, rekognition=rekognition, cxr_concurrency=2).start()
    expect_detect(rekognition, 0.9, times=16)
    slack.download_gate = asyncio.Event()
    envelopes = [new_envelope(slack, f"q{i}.jpeg") for i in range(16)]
    for envelope in envelopes:
        assert (await old.post_event(envelope))[0] == 200
    await old.drain_listeners()
    new = await BotHarness(slack, db, rekognition=rekognition).start()
    try:
        assert new.services.intake.in_flight == 0
        assert await new.services.intake.resume() == 0
        slack.download_gate.set()
        await asyncio.sleep(0)
        await old.services.stop(drain_seconds=0.01)  # SIGTERM: most still unanswered
        old.services = None
        await old.stop()
        await wait_answered(slack, envelopes, within=30)
        await new.drain()
    finally:
        await new.stop()
    assert [len(replies(slack, e)) for e in envelopes] == [1] * 16


async def test_downloads_ride_out_a_slack_outage(slack, rekognition, tmp_path):
    clock = FakeClock()
    bot = await BotHarness(slack, tmp_path / "cxr.db", rekognition=rekognition, clock=clock).start()
    try:
        expect_detect(rekognition, 0.9)
        slack.fail_downloads(status=503, times=4)
        slack.fail_downloads(status=429, times=1, retry_after=20)
        envelope = new_envelope(slack)
        assert (await bot.post_event(envelope))[0] == 200
        for _ in range(40):
            if replies(slack, envelope):
                break
            await clock.advance(5)
            await asyncio.sleep(0.05)
        await bot.drain()
    finally:
        await bot.stop()
    [reply] = replies(slack, envelope)
    assert "Pneumonia" in reply["text"] and "download" not in reply["text"]


async def test_a_long_outage_gets_one_clear_reply(slack, rekognition, tmp_path):
    clock = FakeClock()
    bot = await BotHarness(slack, tmp_path / "cxr.db", rekognition=rekognition, clock=clock).start()
    try:
        slack.fail_downloads(status=502, times=1000)
        envelope = new_envelope(slack)
        assert (await bot.post_event(envelope))[0] == 200
        for _ in range(100):
            if replies(slack, envelope):
                break
            await clock.advance(10)
            await asyncio.sleep(0.02)
        await bot.drain()
    finally:
        await bot.stop()
    [reply] = replies(slack, envelope)
    assert "Slack kept failing for several minutes" in reply["text"]


async def test_a_lease_renewed_in_work_keeps_a_slow_upload_with_its_instance(
    slack, rekognition, tmp_path
):
    """An upload in work longer than the lease is renewed, not taken over and answered twice."""
    db = tmp_path / "cxr.db"
    first = await BotHarness(slack, db, rekognition=rekognition, cxr_upload_lease_seconds=1).start()
    second = await BotHarness(
        slack, db, rekognition=rekognition, cxr_upload_lease_seconds=1
    ).start()
    try:
        expect_detect(rekognition, 0.9)
        slack.download_gate = asyncio.Event()
        envelope = new_envelope(slack)
        assert (await first.post_event(envelope))[0] == 200
        await asyncio.sleep(2.5)  # more than two lease lengths
        assert second.services.intake.in_flight == 0
        slack.download_gate.set()
        await first.drain()
        await second.drain()
    finally:
        await second.stop()
        await first.stop()
    assert len(replies(slack, envelope)) == 1
    assert not slack.calls_to("conversations.replies")  # nobody resumed it


async def test_an_upload_is_recorded_even_when_bolt_cannot_authorize_it(slack, tmp_path):
    """Bolt's auth.test fails on the first event (Slack's API is down) and Bolt answers 200
    without running the listener: the claim came first, so the upload is still answered."""
    # down for the start-up warm-up and for Bolt's own auth.test on the first event
    slack.fail("auth.test", status=200, body={"ok": False, "error": "fatal_error"}, times=2)
    bot = await BotHarness(
        slack, tmp_path / "cxr.db", local=StillModel(), cxr_upload_lease_seconds=1
    ).start()
    try:
        envelope = new_envelope(slack)
        assert (await bot.post_event(envelope))[0] == 200
        await slack.wait_for(lambda: bool(replies(slack, envelope)), 15, "the reply")
        await bot.drain()
    finally:
        await bot.stop()
    assert len(slack.calls_to("auth.test")) == 2  # warm-up and Bolt: both failed
    [reply] = replies(slack, envelope)
    assert "Normal" in reply["text"]


async def test_socket_mode_leaves_an_unrecorded_upload_unacked_and_slack_delivers_it_again(
    tmp_path, unused_tcp_port
):
    from bot.localslack.server import Redelivery
    from bot.settings import Settings
    from bot.slack.app import build_app, slack_services
    from bot.slack.transports import serve_socket_mode

    schedule = Redelivery(ack_timeout_s=3.0, delays=(0.0, 0.5, 1.0))
    async with LocalSlack(redelivery=schedule) as slack:
        settings = Settings(
            _env_file=None,
            slack_bot_token=slack.bot_token,
            slack_app_token=slack.app_token,
            slack_api_url=slack.api_url,
            cxr_db_path=tmp_path / "cxr.db",
            host="127.0.0.1",
            port=unused_tcp_port,
        )
        services, client = await slack_services(
            settings, slack.bot_token, slack.api_url, local=StillModel()
        )
        server = await serve_socket_mode(build_app(services, client), services, slack.app_token)
        await services.start()
        other = sqlite3.connect(tmp_path / "cxr.db", isolation_level=None, timeout=0)
        try:
            await slack.wait_for(lambda: bool(slack.sockets), what="the socket")
            other.execute("BEGIN IMMEDIATE")
            envelope = new_envelope(slack)
            delivery = slack.deliver(envelope)
            await slack.wait_for(lambda: len(delivery.attempts) >= 2, 10, "a redelivery")
            other.execute("ROLLBACK")
            await asyncio.wait_for(delivery.finished.wait(), 15)
            await slack.wait_for(lambda: bool(replies(slack, envelope)), 10, "the reply")
            await services.intake.drain()
        finally:
            other.close()
            await server.close()
            await services.stop()
    assert delivery.acked
    assert delivery.attempts[0].status is None  # the first delivery was never acknowledged
    assert len(replies(slack, envelope)) == 1
