"""Settings: one clear message naming every missing or invalid value, at start."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bot.settings import SettingsError, load_settings

ENV_NAMES = ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "CXR_PROJECT_ARN")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for name in (*ENV_NAMES, "CXR_PROJECT_VERSION_ARN", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_run_the_local_shell():
    settings = load_settings()
    assert settings.transport == "shell"
    assert not settings.uses_rekognition
    assert settings.slack_api_url == "https://slack.com/api/"  # SLACK_API_URL's default; no call


def test_transport_follows_the_tokens(monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s")
    assert load_settings().transport == "http"
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1")
    assert load_settings().transport == "socket"


def test_every_problem_is_named_in_one_message(monkeypatch):
    monkeypatch.setenv("SLACK_APP_TOKEN", "not-an-app-token")
    monkeypatch.setenv("CXR_CONFIDENCE_THRESHOLD", "1.5")
    monkeypatch.setenv("PORT", "http")
    monkeypatch.setenv("CXR_PROJECT_ARN", "arn:aws:rekognition:us-east-1:1:project/cxr/1")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    for expected in (
        "CXR_CONFIDENCE_THRESHOLD: Input should be less than or equal to 1",
        "PORT: Input should be a valid integer",
        "SLACK_BOT_TOKEN: missing",
        "SLACK_APP_TOKEN: must be an app-level token",
        "AWS_REGION: missing",
    ):
        assert expected in message
    assert "Traceback" not in message


def test_lists_are_comma_separated(monkeypatch):
    monkeypatch.setenv("CXR_ADMINS", "U01, S02 ,")
    monkeypatch.setenv("CXR_ALLOWED_CHANNELS", "C1")
    settings = load_settings()
    assert settings.cxr_admins == ["U01", "S02"]
    assert settings.cxr_allowed_channels == ["C1"]


def test_dotenv_file_is_read(tmp_path):
    (tmp_path / ".env").write_text("CXR_CONFIDENCE_THRESHOLD=0.8\nCXR_TIMEZONE=Europe/Paris\n")
    settings = load_settings()
    assert settings.cxr_confidence_threshold == 0.8
    assert settings.zone.key == "Europe/Paris"


def test_cxr_bot_exits_2_with_the_message_when_settings_are_missing(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "SLACK_SIGNING_SECRET": "secret", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "bot"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN: missing" in result.stderr
    assert "Traceback" not in result.stderr
