"""The core loop over the wire: signed events in, downloads from Slack, verdicts in threads."""

from __future__ import annotations

import asyncio
import io
import time

import pytest
from botocore.stub import ANY
from PIL import Image

from bot.core.intake import REACTION_NORMAL, REACTION_PNEUMONIA, REACTION_WORKING
from tests.harness import VERSION_ARN, BotHarness, labels_response, replies_in_thread
from tests.synthetic import chest_xray, jpeg_bytes, png16_bytes, png_bytes

CHANNEL = "C0CLINIC1"
DETECT_PARAMS = {"ProjectVersionArn": VERSION_ARN, "Image": {"Bytes": ANY}, "MinConfidence": 0}


def xray_jpeg(seed: int = 0, size: tuple[int, int] = (900, 1000)) -> bytes:
    return jpeg_bytes(chest_xray(seed=seed, size=size))


def expect_detect(rekognition, pneumonia: float, times: int = 1) -> None:
    for _ in range(times):
        rekognition.stubber.add_response(
            "detect_custom_labels", labels_response(pneumonia), DETECT_PARAMS
        )


@pytest.fixture
async def bot(slack, rekognition, tmp_path):
    harness = await BotHarness(slack, tmp_path / "cxr.db", rekognition=rekognition).start()
    yield harness
    await harness.stop()


async def test_one_image_gets_a_verdict_in_its_thread(bot, slack, rekognition):
    expect_detect(rekognition, pneumonia=0.971)
    envelope = await bot.share(CHANNEL, [("person1_virus_6.jpeg", xray_jpeg())])
    await bot.drain()

    ts = envelope["event"]["ts"]
    [reply] = replies_in_thread(slack, CHANNEL, ts)
    assert (
        "person1_virus_6.jpeg: Pneumonia, 97.1% (Rekognition cxr cxr.2026-01-01)." in reply["text"]
    )
    assert "Screening aid only, not a diagnosis." in reply["text"]
    block_text = str(reply["blocks"])
    assert "*Pneumonia*, 97.1%" in block_text and "Screening aid only" in block_text
    # :eyes: while working, then swapped for the outcome
    assert [c.params["name"] for c in slack.calls_to("reactions.add")] == [
        REACTION_WORKING,
        REACTION_PNEUMONIA,
    ]
    assert slack.reactions[(CHANNEL, ts)] == [REACTION_PNEUMONIA]
    # the image was downloaded with the bot token and sent to Rekognition as a JPEG
    rekognition.stubber.assert_no_pending_responses()


async def test_three_images_in_one_message_get_one_reply(bot, slack, rekognition):
    expect_detect(rekognition, pneumonia=0.1, times=3)
    files = [(f"xray{i}.jpeg", xray_jpeg(seed=i)) for i in range(3)]
    envelope = await bot.share(CHANNEL, files)
    await bot.drain()

    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    for i in range(3):
        assert f"xray{i}.jpeg: Normal, 90.0%" in reply["text"]
    assert slack.reactions[(CHANNEL, envelope["event"]["ts"])] == [REACTION_NORMAL]


async def test_reply_goes_into_the_existing_thread(bot, slack, rekognition):
    expect_detect(rekognition, pneumonia=0.2)
    envelope = await bot.share(CHANNEL, [("a.jpeg", xray_jpeg())], thread_ts="1759999999.000100")
    await bot.drain()
    assert len(replies_in_thread(slack, CHANNEL, "1759999999.000100")) == 1
    assert not replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])


async def test_slack_retry_of_the_same_event_gets_no_second_reply(bot, slack, rekognition):
    expect_detect(rekognition, pneumonia=0.9)
    envelope = await bot.share(CHANNEL, [("a.jpeg", xray_jpeg())])
    for retry in (1, 2, 3):
        status, _ = await bot.post_event(
            envelope,
            headers={"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"},
        )
        assert status == 200
    await bot.drain()
    assert len(replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])) == 1
    assert len(slack.calls_to("chat.postMessage")) == 1


async def test_restart_between_two_deliveries_does_not_answer_twice(slack, rekognition, tmp_path):
    db = tmp_path / "cxr.db"
    expect_detect(rekognition, pneumonia=0.9)
    first = await BotHarness(slack, db, rekognition=rekognition).start()
    envelope = await first.share(CHANNEL, [("a.jpeg", xray_jpeg())])
    await first.drain()
    await first.stop()

    second = await BotHarness(slack, db, rekognition=rekognition).start()
    try:
        status, _ = await second.post_event(envelope, headers={"X-Slack-Retry-Num": "1"})
        assert status == 200
        await second.drain()
    finally:
        await second.stop()
    assert len(replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])) == 1
    rekognition.stubber.assert_no_pending_responses()


async def test_upload_claimed_before_a_crash_is_answered_after_restart(
    slack, rekognition, tmp_path
):
    """The first run takes the upload but dies before answering; once its lease lapses the
    next run answers it (and not before: a live instance keeps what it leased)."""
    db = tmp_path / "cxr.db"
    gate = asyncio.Event()

    first = await BotHarness(slack, db, rekognition=rekognition, cxr_upload_lease_seconds=1).start()
    original_fetch = first.services.intake.fetcher.fetch

    async def hang(ref, max_bytes):
        await gate.wait()
        return await original_fetch(ref, max_bytes)

    first.services.intake.fetcher.fetch = hang  # the process "dies" mid-download
    envelope = await first.share(CHANNEL, [("a.jpeg", xray_jpeg())])
    await first.drain_listeners()
    await first._runner.cleanup()
    first._runner = None
    doomed = [*first.services._tasks, *first.services.intake._working.values()]
    for task in doomed:  # no renewals, no answer, no lease released: as after kill -9
        task.cancel()
    await asyncio.gather(*doomed, return_exceptions=True)
    first.services.db.close()
    assert not replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])

    expect_detect(rekognition, pneumonia=0.95)
    second = await BotHarness(
        slack, db, rekognition=rekognition, cxr_upload_lease_seconds=1
    ).start()
    try:
        assert second.services.intake.in_flight == 0  # the lease is still running
        await slack.wait_for(
            lambda: bool(replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])),
            what="the resumed upload's reply",
        )
        await second.drain()
    finally:
        await second.stop()
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert "Pneumonia, 95.0%" in reply["text"]


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("scan.jpeg", b"\xff\xd8\xff\xe0 definitely not a jpeg" * 20, "seems damaged"),
        ("report.pdf", b"%PDF-1.7\n1 0 obj <<>> endobj\n%%EOF", "PDFs aren't supported"),
        ("export.dcm", b"\0" * 128 + b"DICM" + b"\0" * 64, "This DICOM file holds no image"),
        ("tiny.png", png_bytes(Image.new("L", (20, 20))), "only 20×20 pixels"),
    ],
)
async def test_bad_files_get_a_specific_reply(bot, slack, name, data, expected):
    envelope = await bot.share(CHANNEL, [(name, data)])
    await bot.drain()
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert f"{name}: " in reply["text"] and expected in reply["text"]
    assert "Traceback" not in reply["text"]


async def test_file_over_the_cap_is_refused_before_download(slack, rekognition, tmp_path):
    harness = await BotHarness(
        slack, tmp_path / "cxr.db", rekognition=rekognition, cxr_max_upload_mb=0.05
    ).start()
    try:
        envelope = await harness.share(
            CHANNEL, [("big.png", png_bytes(chest_xray(size=(800, 800))))]
        )
        await harness.drain()
    finally:
        await harness.stop()
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert "big.png: This file is 125 KB, over my 51 KB limit for X-rays" in reply["text"]
    assert slack.downloads == []  # refused from the event's size alone


async def test_download_is_capped_even_when_the_event_understates_the_size(
    slack, rekognition, tmp_path
):
    harness = await BotHarness(
        slack, tmp_path / "cxr.db", rekognition=rekognition, cxr_max_upload_mb=0.05
    ).start()
    try:
        file = slack.add_file("big.png", png_bytes(chest_xray(size=(800, 800))))
        file["size"] = 1000  # a lie, and no Content-Length: the stream itself is cut at the cap
        slack.files_chunked = True
        envelope = slack.file_share_envelope(CHANNEL, [file])
        await harness.post_event(envelope)
        await harness.drain()
    finally:
        await harness.stop()
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert "big.png: This file is over my 51 KB limit for X-rays" in reply["text"]


async def test_16_bit_png_is_classified(bot, slack, rekognition):
    sent = []
    rekognition.meta.events.register(
        "provide-client-params.rekognition.DetectCustomLabels",
        lambda params, **_: sent.append(params["Image"]["Bytes"]),
    )
    expect_detect(rekognition, pneumonia=0.3)
    envelope = await bot.share(CHANNEL, [("film16.png", png16_bytes(chest_xray(size=(700, 800))))])
    await bot.drain()
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert "film16.png: Normal, 70.0%" in reply["text"]
    decoded = Image.open(io.BytesIO(sent[0]))
    assert decoded.format == "JPEG" and decoded.mode == "L"
    assert decoded.getextrema()[1] > 200  # stretched to the full 8-bit range, not clipped


async def test_html_login_page_means_the_files_read_scope_is_missing(bot, slack):
    slack.files_answer_html = True
    envelope = await bot.share(CHANNEL, [("a.jpeg", xray_jpeg())])
    await bot.drain()
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert "files:read" in reply["text"]


async def test_model_not_running_says_who_can_start_it(bot, slack, rekognition):
    rekognition.stubber.add_client_error(
        "detect_custom_labels",
        service_error_code="ResourceNotReadyException",
        service_message="ProjectVersion arn is not ready",
        http_status_code=400,
        expected_params=DETECT_PARAMS,
    )
    envelope = await bot.share(CHANNEL, [("a.jpeg", xray_jpeg())])
    await bot.drain()
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert "isn't running" in reply["text"] and "/cxr start" in reply["text"]


async def test_aws_credentials_denied_is_explained(bot, slack, rekognition):
    rekognition.stubber.add_client_error(
        "detect_custom_labels",
        service_error_code="AccessDeniedException",
        service_message="User is not authorized",
        http_status_code=400,
    )
    envelope = await bot.share(CHANNEL, [("a.jpeg", xray_jpeg())])
    await bot.drain()
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert "refused my credentials" in reply["text"]


async def test_throttling_is_retried_with_backoff_then_succeeds(slack, tmp_path):
    """Real botocore retries: a before-send hook answers at the HTTP layer, below the retries."""
    from botocore.awsrequest import AWSResponse

    from tests.harness import rekognition_client

    client = rekognition_client()
    answers = [
        (400, {"__type": "ThrottlingException", "message": "Rate exceeded"}),
        (400, {"__type": "ProvisionedThroughputExceededException", "message": "Too many"}),
        (200, labels_response(0.88)),
    ]
    seen = []

    class Raw:
        def __init__(self, body: bytes) -> None:
            self.body = body

        def stream(self, **_):
            yield self.body

    def send(request, **_):
        seen.append(request.headers["X-Amz-Target"].decode())
        status, body = answers.pop(0)
        import json

        return AWSResponse(
            request.url,
            status,
            {"Content-Type": "application/x-amz-json-1.1"},
            Raw(json.dumps(body).encode()),
        )

    client.meta.events.register("before-send.rekognition.DetectCustomLabels", send)
    harness = await BotHarness(slack, tmp_path / "cxr.db", rekognition=client).start()
    try:
        envelope = await harness.share(CHANNEL, [("a.jpeg", xray_jpeg())])
        await harness.drain()
    finally:
        await harness.stop()
    assert seen == ["RekognitionService.DetectCustomLabels"] * 3
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert "a.jpeg: Pneumonia, 88.0%" in reply["text"]


async def test_429_on_post_message_is_retried_and_the_reply_lands_once(bot, slack, rekognition):
    expect_detect(rekognition, pneumonia=0.9)
    slack.fail("chat.postMessage", status=429, retry_after=1, times=2)
    envelope = await bot.share(CHANNEL, [("a.jpeg", xray_jpeg())])
    await bot.drain()
    assert len(slack.calls_to("chat.postMessage")) == 3
    assert len(replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])) == 1


async def test_forged_signature_is_rejected(bot, slack):
    envelope = slack.file_share_envelope(CHANNEL, [slack.add_file("a.jpeg", xray_jpeg())])
    status, _ = await bot.post_event(envelope, signature="v0=" + "0" * 64)
    assert status == 401
    await bot.drain()
    assert not slack.calls_to("chat.postMessage") and not slack.calls_to("reactions.add")


async def test_stale_timestamp_is_rejected(bot, slack):
    envelope = slack.file_share_envelope(CHANNEL, [slack.add_file("a.jpeg", xray_jpeg())])
    status, _ = await bot.post_event(envelope, timestamp=int(time.time()) - 6 * 60)
    assert status == 401
    await bot.drain()
    assert not slack.calls_to("chat.postMessage")


async def test_ack_comes_before_the_work(bot, slack, rekognition):
    """The event is acknowledged while its image is still being processed."""
    gate = asyncio.Event()
    fetch = bot.services.intake.fetcher.fetch

    async def slow_fetch(ref, max_bytes):
        await gate.wait()
        return await fetch(ref, max_bytes)

    bot.services.intake.fetcher.fetch = slow_fetch
    expect_detect(rekognition, pneumonia=0.5)
    envelope = await bot.share(CHANNEL, [("a.jpeg", xray_jpeg())])  # asserts 200
    assert bot.services.intake.in_flight == 1
    assert not replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    gate.set()
    await bot.drain()
    assert len(replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])) == 1


async def test_uncertain_when_top_score_is_under_the_threshold(bot, slack, rekognition):
    expect_detect(rekognition, pneumonia=0.55)
    envelope = await bot.share(CHANNEL, [("a.jpeg", xray_jpeg())])
    await bot.drain()
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert "a.jpeg: Uncertain (Normal 45.0%, Pneumonia 55.0%)" in reply["text"]


async def test_non_image_files_in_a_channel_are_ignored_quietly(bot, slack):
    await bot.share(CHANNEL, [("notes.txt", b"hello"), ("sheet.xlsx", b"PK\x03\x04")])
    await bot.drain()
    assert not slack.calls_to("chat.postMessage") and not slack.calls_to("reactions.add")


async def test_non_image_file_in_a_dm_gets_a_reply(bot, slack):
    envelope = await bot.share("D0DIRECT1", [("notes.txt", b"hello")], channel_type="im")
    await bot.drain()
    [reply] = replies_in_thread(slack, "D0DIRECT1", envelope["event"]["ts"])
    assert "isn't an image" in reply["text"]


async def test_bot_ignores_its_own_messages(bot, slack):
    file = slack.add_file("heatmap.png", png_bytes(chest_xray()), user=slack.bot_user_id)
    envelope = slack.file_share_envelope(CHANNEL, [file], user=slack.bot_user_id)
    envelope["event"]["bot_id"] = slack.bot_id
    await bot.post_event(envelope)
    await bot.drain()
    assert not slack.calls_to("chat.postMessage")


async def test_channels_outside_the_allowed_list_are_ignored(slack, rekognition, tmp_path):
    harness = await BotHarness(
        slack, tmp_path / "cxr.db", rekognition=rekognition, cxr_allowed_channels="C0RADIOL1"
    ).start()
    try:
        expect_detect(rekognition, pneumonia=0.1)
        await harness.share(CHANNEL, [("a.jpeg", xray_jpeg())])
        direct = await harness.share("D0DIRECT1", [("b.jpeg", xray_jpeg())], channel_type="im")
        await harness.drain()
    finally:
        await harness.stop()
    assert not slack.bot_messages(CHANNEL)
    assert len(replies_in_thread(slack, "D0DIRECT1", direct["event"]["ts"])) == 1  # DMs always


async def test_token_is_never_sent_to_a_foreign_host(bot, slack):
    """A file URL outside Slack's hosts is refused without a request carrying the token."""
    from aiohttp import web

    from bot.slack.transports import start_site

    hits = []

    async def foreign(request):
        hits.append(request.headers.get("Authorization"))
        return web.Response(body=xray_jpeg(), content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/{tail:.*}", foreign)
    runner = await start_site(app, "127.0.0.2", 0)
    try:
        port = runner.addresses[0][1]
        file = slack.add_file("a.jpeg", xray_jpeg())
        file["url_private_download"] = f"http://127.0.0.2:{port}/steal"
        envelope = slack.file_share_envelope(CHANNEL, [file])
        await bot.post_event(envelope)
        await bot.drain()
    finally:
        await runner.cleanup()
    assert hits == []
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert "only download files hosted by Slack" in reply["text"]


async def test_slack_connect_files_are_looked_up_with_files_info(bot, slack, rekognition):
    expect_detect(rekognition, pneumonia=0.1)
    file = slack.add_file("a.jpeg", xray_jpeg())
    envelope = slack.file_share_envelope(
        CHANNEL, [{"id": file["id"], "file_access": "check_file_info"}]
    )
    await bot.post_event(envelope)
    await bot.drain()
    assert [c.params["file"] for c in slack.calls_to("files.info")] == [file["id"]]
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert "a.jpeg: Normal, 90.0%" in reply["text"]


async def test_healthz(bot):
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(f"{bot.url}/healthz") as response:
        body = await response.json()
    assert response.status == 200
    assert body["status"] == "ok" and body["transport"] == "http"
    assert body["model"] == "Rekognition cxr cxr.2026-01-01"


async def test_many_images_are_processed_a_few_at_a_time(slack, rekognition, tmp_path):
    harness = await BotHarness(
        slack, tmp_path / "cxr.db", rekognition=rekognition, cxr_concurrency=2
    ).start()
    try:
        expect_detect(rekognition, pneumonia=0.1, times=6)
        slack.download_gate = asyncio.Event()
        envelopes = [
            await harness.share(CHANNEL, [(f"x{i}.jpeg", xray_jpeg(seed=i))]) for i in range(3)
        ]
        envelopes.append(
            await harness.share(CHANNEL, [(f"y{i}.jpeg", xray_jpeg(seed=9 + i)) for i in range(3)])
        )
        await slack.wait_for(lambda: slack.downloads_in_flight == 2, what="two downloads")
        await asyncio.sleep(0.2)  # give any third download the chance to start (it must not)
        assert slack.downloads_in_flight == 2
        slack.download_gate.set()
        await harness.drain()
    finally:
        await harness.stop()
    assert slack.max_downloads_in_flight == 2
    for envelope in envelopes:
        assert len(replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])) == 1


async def test_a_burst_is_answered_exactly_once_each(bot, slack, rekognition):
    expect_detect(rekognition, pneumonia=0.9, times=30)
    data = xray_jpeg(size=(400, 400))
    envelopes = [
        slack.file_share_envelope(CHANNEL, [slack.add_file(f"b{i}.jpeg", data)]) for i in range(30)
    ]
    slack.fail("chat.postMessage", status=429, retry_after=1, times=3)
    statuses = await asyncio.gather(*(bot.post_event(e) for e in envelopes))
    statuses += await asyncio.gather(
        *(bot.post_event(e, headers={"X-Slack-Retry-Num": "1"}) for e in envelopes[:10])
    )
    assert {status for status, _ in statuses} == {200}
    await bot.drain()
    for envelope in envelopes:
        assert len(replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])) == 1


async def test_slack_outage_longer_than_the_client_retries_is_ridden_out(
    slack, rekognition, tmp_path
):
    """Five 503s in a row outlast slack_sdk's retries; intake tries again later (fake clock)."""
    from bot.core.clock import FakeClock

    clock = FakeClock()
    harness = await BotHarness(
        slack, tmp_path / "cxr.db", rekognition=rekognition, clock=clock
    ).start()
    try:
        expect_detect(rekognition, pneumonia=0.9)
        slack.fail("chat.postMessage", status=503, times=5)
        envelope = await harness.share(CHANNEL, [("a.jpeg", xray_jpeg())])
        await slack.wait_for(lambda: len(slack.calls_to("chat.postMessage")) == 4, what="retries")
        await clock.advance(5)
        await slack.wait_for(lambda: len(slack.calls_to("chat.postMessage")) >= 5, what="2nd try")
        await clock.advance(30)
        await harness.drain()
    finally:
        await harness.stop()
    assert len(replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])) == 1


async def test_channel_gone_for_good_is_not_retried_forever(slack, rekognition, tmp_path):
    db = tmp_path / "cxr.db"
    harness = await BotHarness(slack, db, rekognition=rekognition).start()
    try:
        expect_detect(rekognition, pneumonia=0.9)
        slack.fail("chat.postMessage", status=200, body={"ok": False, "error": "is_archived"})
        envelope = await harness.share(CHANNEL, [("a.jpeg", xray_jpeg())])
        await harness.drain()
        assert await harness.services.uploads.is_answered(CHANNEL, envelope["event"]["ts"])
    finally:
        await harness.stop()
    assert len(slack.calls_to("chat.postMessage")) == 1


async def test_logs_carry_identifiers_not_patient_data(bot, slack, rekognition):
    """File names can carry a patient's name; the bot's logs (as configured in production, even
    at DEBUG) get file IDs and outcome codes only, and libraries' request dumps stay quiet."""
    import io
    import logging

    from bot import log

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    log.configure("DEBUG", "json", stream=stream)
    try:
        expect_detect(rekognition, pneumonia=0.9)
        name = "Jane_Doe_1961-04-02_chest.jpeg"
        envelope = await bot.share(
            CHANNEL, [(name, xray_jpeg()), ("Jane_Doe_notes.pdf", b"%PDF-1")]
        )
        await bot.drain()
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    assert len(replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])) == 1
    logged = stream.getvalue()
    assert '"event": "upload.answered"' in logged and '"file_id": "F' in logged
    assert "Jane" not in logged and "Doe" not in logged
