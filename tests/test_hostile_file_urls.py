"""The bot token goes only to Slack's file-download paths, never to a Web API method; files
stored outside Slack get a clear reply. Over the wire, with LocalSlack counting every call."""

from __future__ import annotations

import pytest

from bot.adapters.slack_files import SLACK_FILE_HOSTS, is_file_url
from bot.settings import SLACK_API_URL
from tests.harness import replies_in_thread
from tests.test_core_loop import CHANNEL, bot, xray_jpeg  # noqa: F401

# Pure URL checks, nothing is fetched: the hosts are the production defaults, by reference.
API = SLACK_API_URL
FILES = SLACK_FILE_HOSTS[0]
SLACK = API.split("/")[2]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        (f"https://{FILES}/files-pri/T1-F1/download/x.png", True),
        (f"https://{FILES}/files-tmb/T1-F1-abc/x_720.png", True),
        (f"https://{SLACK}/api/chat.postMessage?channel=C1&text=hi", False),
        (f"https://{FILES}/api/chat.postMessage", False),
        (f"https://{FILES}/files-pri/../api/chat.postMessage", False),
        (f"https://{FILES}/files-pri/%2e%2e/api/chat.postMessage", False),
        (f"https://{FILES}/files-pri/T1-F1/..%2F..%2Fapi%2Fauth.test", False),
        (f"http://{FILES}/files-pri/T1-F1/x.png", False),  # not https
        (f"https://{FILES}.evil.example/files-pri/T1-F1/x.png", False),
        (f"https://user:pw@{FILES}/files-pri/T1-F1/x.png", False),
        ("https://evil.example/files-pri/T1-F1/x.png", False),
        (f"https://{SLACK}/files-pri/T1-F1/x.png", True),  # the API origin, a file path
        ("not a url", False),
        ("", False),
    ],
)
def test_only_file_download_paths_on_file_hosts(url, allowed):
    assert is_file_url(url, API) is allowed


def test_file_hosts_are_a_setting_and_the_stand_in_serves_files_too():
    assert is_file_url(
        "https://files.example-gov.com/files-pri/T-F/x.png", API, ("files.example-gov.com",)
    )
    assert is_file_url("http://127.0.0.1:9000/files-pri/T-F/x.png", "http://127.0.0.1:9000/api/")
    assert not is_file_url(
        "http://127.0.0.1:9000/api/chat.postMessage", "http://127.0.0.1:9000/api/"
    )
    assert not is_file_url(
        "http://127.0.0.1:9001/files-pri/T-F/x.png", "http://127.0.0.1:9000/api/"
    )


async def test_a_url_private_pointing_at_a_web_api_method_gets_no_token(bot, slack):  # noqa: F811
    """The file object names chat.postMessage on the (stand-in) API host: not fetched at all."""
    file = slack.add_file("a.jpeg", xray_jpeg())
    hostile = f"{slack.api_url}chat.postMessage?channel={CHANNEL}&text=pwned"
    file["url_private"] = file["url_private_download"] = hostile
    envelope = slack.file_share_envelope(CHANNEL, [file])
    await bot.post_event(envelope)
    await bot.drain()
    assert [m for m in slack.bot_messages(CHANNEL) if m["text"] == "pwned"] == []
    posted = [c for c in slack.calls_to("chat.postMessage") if c.params.get("text") == "pwned"]
    assert posted == []
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert "only download files hosted by Slack" in reply["text"]


@pytest.mark.parametrize(
    "fields",
    [
        {"is_external": True, "external_type": "gdrive", "mode": "external"},
        {"is_external": True, "external_type": "app"},  # a remote file (files.remote.add)
    ],
)
async def test_external_and_remote_files_are_refused_with_a_reply(bot, slack, fields):  # noqa: F811
    file = slack.add_file("a.jpeg", xray_jpeg())
    file.update(fields)
    envelope = slack.file_share_envelope(CHANNEL, [file])
    await bot.post_event(envelope)
    await bot.drain()
    assert slack.downloads == []  # nothing fetched, with or without the token
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert "stored outside Slack" in reply["text"] and "upload the X-ray itself" in reply["text"]
