"""Socket Mode over a real WebSocket: the same listeners, acks by envelope, /healthz connected."""

from __future__ import annotations

import aiohttp
import pytest
from botocore.stub import ANY

from bot.settings import Settings
from bot.slack.app import build_app, listeners_settled, slack_services
from bot.slack.transports import serve_socket_mode
from tests.harness import PROJECT_ARN, VERSION_ARN, labels_response, replies_in_thread
from tests.synthetic import chest_xray, jpeg_bytes


@pytest.fixture
async def socket_bot(slack, rekognition, tmp_path, unused_tcp_port):
    settings = Settings(
        _env_file=None,
        slack_bot_token=slack.bot_token,
        slack_app_token=slack.app_token,
        slack_api_url=slack.api_url,
        cxr_db_path=tmp_path / "cxr.db",
        aws_region="us-east-1",
        cxr_project_arn=PROJECT_ARN,
        cxr_project_version_arn=VERSION_ARN,
        cxr_local_fallback=False,
        host="127.0.0.1",
        port=unused_tcp_port,
    )
    services, client = await slack_services(
        settings, slack.bot_token, slack.api_url, aws={"rekognition": rekognition}
    )
    app = build_app(services, client)
    server = await serve_socket_mode(app, services, slack.app_token)
    await services.start()
    await slack.wait_for(lambda: bool(slack.sockets), what="the socket to connect")
    yield services, f"http://127.0.0.1:{unused_tcp_port}", server.handler
    await server.close()
    await services.stop()


async def test_file_share_over_socket_mode_is_acked_and_answered(socket_bot, slack, rekognition):
    services, _, _ = socket_bot
    rekognition.stubber.add_response(
        "detect_custom_labels",
        labels_response(0.2),
        {"ProjectVersionArn": VERSION_ARN, "Image": {"Bytes": ANY}, "MinConfidence": 0},
    )
    file = slack.add_file("a.jpeg", jpeg_bytes(chest_xray()))
    envelope = slack.file_share_envelope("C0CLINIC1", [file])
    first = await slack.push("events_api", envelope)
    # the redelivery Slack makes when an ack is late carries retry_attempt; it is not re-answered
    again = await slack.push("events_api", envelope, retry_attempt=1, retry_reason="timeout")
    await slack.wait_for(
        lambda: {first, again} <= {a.get("envelope_id") for a in slack.socket_acks},
        what="both envelopes to be acknowledged",
    )
    await listeners_settled()
    await services.intake.drain()
    [reply] = replies_in_thread(slack, "C0CLINIC1", envelope["event"]["ts"])
    assert "a.jpeg: Normal, 80.0%" in reply["text"]


async def test_healthz_reports_the_socket(socket_bot, slack):
    _, url, handler = socket_bot
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/healthz") as response:
            body = await response.json()
        assert response.status == 200
        assert body["transport"] == "socket" and body["socket_connected"] is True

        await handler.client.close()  # the socket is gone: health says so
        async with session.get(f"{url}/healthz") as response:
            body = await response.json()
        assert response.status == 503 and body["socket_connected"] is False
