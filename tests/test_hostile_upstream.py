"""Slack's and a proxy's failures, whatever their body: retried where it helps, then a clear
reply. Over the wire: the real bot (HTTP), LocalSlack behind a proxy that answers in text."""

from __future__ import annotations

import pytest

from bot.core.clock import FakeClock
from bot.slack import permissions
from tests.harness import rekognition_client, replies_in_thread
from tests.proxied_slack import ProxiedSlack
from tests.test_core_loop import CHANNEL, expect_detect, xray_jpeg
from tests.test_lifecycle_slack import ADMIN, GROUP, MEMBER, SERVING, command, harness, press
from tests.test_lifecycle_support import RekognitionWorld, completed

CANT_CHECK = "I couldn't check whether you're one of the bot's admins"


@pytest.fixture
async def slack():
    async with ProxiedSlack(usergroups={GROUP: [ADMIN]}) as server:
        yield server


@pytest.fixture
def world():
    return RekognitionWorld(rekognition_client()).add(completed(SERVING))


@pytest.fixture
async def bot(slack, tmp_path, world):
    bot = await harness(slack, tmp_path, world, FakeClock()).start()
    yield bot
    await bot.stop()


# --- the admin check ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (503, "Service Unavailable", "text/plain"),
        (502, "<html><body>Bad Gateway</body></html>", "text/html"),
        (504, '{"ok": fal', "application/json"),  # cut short
        (200, "upstream says hi", "text/plain"),
    ],
)
async def test_admin_check_that_cannot_be_made_refuses_and_says_why(
    bot, slack, world, status, body, content_type
):
    slack.proxy_fail(
        "usergroups.users.list", status=status, body=body, content_type=content_type, times=20
    )
    users = (MEMBER, ADMIN) if status == 503 else (MEMBER,)
    for user in users:  # not even an admin passes a check that couldn't be made
        response = await command(bot, "stop", user=user)
        assert CANT_CHECK in response["text"], response["text"]
        assert "please try again in a minute" in response["text"]
        assert "Something went wrong" not in response["text"]
    assert not world.called("StopProjectVersion")
    [entry] = await bot.services.audit.recent(1)
    assert entry.result.startswith("refused: admin check unavailable (")
    if status >= 500:  # server errors are retried before giving up
        assert len(slack.calls_to("usergroups.users.list")) >= 4 * len(users)


async def test_one_proxy_503_on_the_admin_check_is_ridden_out(bot, slack, world):
    slack.proxy_fail("usergroups.users.list", status=503, times=1)
    proposal = await command(bot, f"start {SERVING} 1", user=ADMIN)
    assert "Start cxr.2026-01-01 with 1 inference unit" in proposal["text"]
    member = await command(bot, "stop", user=MEMBER)  # a definite answer: not an admin
    assert member["text"].startswith("Sorry, only the bot's admins can do that.")


async def test_button_press_with_the_admin_check_down_gets_a_reply(bot, slack, world, monkeypatch):
    proposal = await command(bot, f"start {SERVING} 1", user=ADMIN)
    monkeypatch.setattr(permissions, "GROUP_CACHE_SECONDS", 0.0)  # the group's cache expired
    monkeypatch.setattr(permissions, "STALE_GROUP_SECONDS", 0.0)  # too long ago to count
    slack.proxy_fail("usergroups.users.list", status=503, times=20)
    await press(bot, proposal, "lifecycle.start.confirm", user=ADMIN)
    answer = slack.responses[-1]
    assert CANT_CHECK in answer["text"] and answer["replace_original"] is False
    assert not world.called("StartProjectVersion")


async def test_recent_membership_counts_while_the_lookup_is_down(bot, slack, world, monkeypatch):
    proposal = await command(bot, f"start {SERVING} 1", user=ADMIN)
    monkeypatch.setattr(permissions, "GROUP_CACHE_SECONDS", 0.0)
    slack.proxy_fail("usergroups.users.list", status=503, times=20)
    await press(bot, proposal, "lifecycle.start.confirm", user=ADMIN)
    assert slack.responses[-1]["text"].startswith("<@U0ADMIN01> confirmed: starting")


# --- files.info and chat.postMessage ----------------------------------------------------------
@pytest.fixture
async def upload_bot(slack, rekognition, tmp_path):
    from tests.harness import BotHarness

    bot = await BotHarness(slack, tmp_path / "cxr.db", rekognition=rekognition).start()
    yield bot
    await bot.stop()


async def test_files_info_down_gets_a_clear_reply_not_silence(upload_bot, slack):
    slack.proxy_fail("files.info", status=502, body="<html>Bad Gateway</html>", times=20)
    file = slack.add_file("a.jpeg", xray_jpeg())
    envelope = slack.file_share_envelope(
        CHANNEL, [{"id": file["id"], "file_access": "check_file_info"}]
    )
    status, _ = await upload_bot.post_event(envelope)
    assert status == 200
    await upload_bot.drain()
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert "Slack didn't tell me where to download this file" in reply["text"]
    assert len(slack.calls_to("files.info")) >= 2  # retried first


async def test_files_info_text_503_once_is_retried(upload_bot, slack, rekognition):
    expect_detect(rekognition, pneumonia=0.1)
    slack.proxy_fail("files.info", status=503, times=1)
    file = slack.add_file("a.jpeg", xray_jpeg())
    envelope = slack.file_share_envelope(
        CHANNEL, [{"id": file["id"], "file_access": "check_file_info"}]
    )
    await upload_bot.post_event(envelope)
    await upload_bot.drain()
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert "a.jpeg: Normal, 90.0%" in reply["text"]


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (503, "Service Unavailable", "text/plain"),
        (502, "<html>Bad Gateway</html>", "text/html"),
        (500, "{not json", "application/json"),
    ],
)
async def test_post_message_proxy_errors_are_retried_and_the_reply_lands_once(
    upload_bot, slack, rekognition, status, body, content_type
):
    expect_detect(rekognition, pneumonia=0.9)
    slack.proxy_fail(
        "chat.postMessage", status=status, body=body, content_type=content_type, times=2
    )
    envelope = await upload_bot.share(CHANNEL, [("a.jpeg", xray_jpeg())])
    await upload_bot.drain()
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert "a.jpeg: Pneumonia, 90.0%" in reply["text"]


def test_file_hosts_setting_takes_host_names_only():
    from bot.settings import Settings

    assert Settings(
        _env_file=None, slack_file_hosts="files.example.com, Files.Example.org"
    ).slack_file_hosts == [
        "files.example.com",
        "files.example.org",
    ]
    with pytest.raises(ValueError, match="not a host name"):
        Settings(_env_file=None, slack_file_hosts="https://api.example.com/api/")


async def test_refusal_without_the_user_still_says_why(slack):
    """A caller that only asks `allows` then `refusal()` (a middleware) gets the reason too."""
    from bot.slack.client import web_client
    from bot.slack.permissions import Admins

    slack.proxy_fail("usergroups.users.list", status=403, body="Forbidden", times=5)
    admins = Admins([GROUP], web_client(slack.bot_token, slack.api_url))
    assert await admins.allows(MEMBER) is False
    assert "`http_403`" in admins.refusal() and "couldn't check" in admins.refusal()
    assert admins.refusal_reason(MEMBER) == "admin check unavailable (http_403)"
