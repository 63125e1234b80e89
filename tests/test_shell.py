"""The local shell, driven as a user would: `cxr-bot` as a subprocess, piped or on a pty."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from bot.ml.model_card import load_model_card
from tests.synthetic import chest_xray, color_photo, jpeg_bytes, png_bytes

BUNDLED = "{0.name} {0.version}".format(load_model_card())

ROOT = Path(__file__).resolve().parent.parent


def shell_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "CXR_GUARD": "heuristic",  # synthetic films; the learned guard has its own tests
    }
    env.update(extra)
    return env


def run_shell(tmp_path: Path, script: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot"],
        input=script,
        cwd=tmp_path,
        env=shell_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "xrays"
    folder.mkdir()
    (folder / "lungs_a.jpeg").write_bytes(jpeg_bytes(chest_xray(seed=1, size=(600, 700))))
    (folder / "lungs_b.png").write_bytes(png_bytes(chest_xray(seed=2, size=(500, 600))))
    (tmp_path / "cat.jpg").write_bytes(jpeg_bytes(color_photo()))
    (tmp_path / "notes.txt").write_text("not an image")
    return folder


def test_piped_session_answers_every_line_and_exits_0(tmp_path, images):
    script = "\n".join(
        [
            str(images / "lungs_a.jpeg"),
            f"{images}/*.png",
            str(tmp_path / "missing.jpeg"),
            str(tmp_path / "notes.txt"),
            str(tmp_path / "cat.jpg"),
            "/cxr help",
            "/cxr status",
            "/cxr start",
        ]
    )
    result = run_shell(tmp_path, script)
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "you>" not in out  # no prompts when stdin is not a terminal
    for name in ("lungs_a.jpeg", "lungs_b.png"):
        assert f"{name}: " in out
        assert (tmp_path / "cxr-heatmaps" / f"{Path(name).stem}-heatmap.png").is_file()
    assert out.count(f"Model: local {BUNDLED}") == 2
    assert "Screening aid only, not a diagnosis." in out
    assert "I can't find" in out and "missing.jpeg" in out
    assert "notes.txt" in out and "This isn't an image" in out
    assert "cat.jpg" in out and "doesn't look like a chest X-ray" in out
    assert "cxr-bot (only you)> " in out and "/cxr status" in out  # help, ephemeral
    assert f"Serving: local {BUNDLED}" in out
    assert "CXR_PROJECT_ARN" in out  # /cxr start: only for Rekognition, and how to set it up
    assert "Traceback" not in out + result.stderr
    assert (tmp_path / "cxr.db").is_file()


def test_a_folder_is_screened_image_by_image(tmp_path, images):
    result = run_shell(tmp_path, str(images))
    assert result.returncode == 0, result.stderr
    assert "lungs_a.jpeg: " in result.stdout and "lungs_b.png: " in result.stdout


class FakeRekognition(BaseHTTPRequestHandler):
    """Rekognition's JSON protocol on 127.0.0.1: one project with one stopped version."""

    calls: ClassVar[list[str]] = []
    version_arn = (
        "arn:aws:rekognition:us-east-1:123456789012:project/cxr/version/cxr.v1/1700000000001"
    )

    def do_POST(self) -> None:
        target = self.headers["X-Amz-Target"].split(".")[-1]
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).calls.append(target)
        status = "STARTING" if "StartProjectVersion" in self.calls else "STOPPED"
        if target == "DescribeProjectVersions":
            body = {
                "ProjectVersionDescriptions": [
                    {
                        "ProjectVersionArn": self.version_arn,
                        "Status": status,
                        "CreationTimestamp": datetime(2026, 1, 1, tzinfo=UTC).timestamp(),
                        "EvaluationResult": {"F1Score": 0.95},
                    }
                ]
            }
        elif target == "StartProjectVersion":
            body = {"Status": "STARTING"}
        else:
            body = {}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_buttons_are_numbered_and_can_be_pressed(tmp_path):
    FakeRekognition.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRekognition)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = run_shell(
            tmp_path,
            "/cxr start cxr.v1\n1\n",
            AWS_REGION="us-east-1",
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{server.server_port}",
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            CXR_PROJECT_ARN="arn:aws:rekognition:us-east-1:123456789012:project/cxr/1700000000000",
            CXR_WATCH_INTERVAL_MINUTES="600",
        )
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    assert "[1] " in result.stdout and "[2] " in result.stdout
    assert "Type a button's number to press it." in result.stdout
    assert "StartProjectVersion" in FakeRekognition.calls
    assert "Traceback" not in result.stdout + result.stderr


def test_interactive_prompt_on_a_terminal(tmp_path, images):
    import pexpect

    child = pexpect.spawn(
        sys.executable,
        ["-m", "bot"],
        cwd=str(tmp_path),
        env=shell_env(tmp_path, TERM="dumb"),
        encoding="utf-8",
        timeout=60,
    )
    try:
        child.expect("local shell")
        child.expect("you> ")
        child.sendline(str(images / "lungs_a.jpeg"))
        child.expect("lungs_a.jpeg: ")
        child.expect("you> ")
        child.sendline("/cxr help")
        child.expect("/cxr status")
        child.expect("you> ")
        child.sendline("quit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert (tmp_path / ".cxr_history").is_file()  # readline history kept between sessions


def test_shell_flag_opens_the_shell_even_with_slack_tokens(tmp_path, images):
    """Without --shell these tokens would start the HTTP transport; with it, the shell."""
    flagged = subprocess.run(
        [sys.executable, "-m", "bot", "--shell"],
        input=str(images / "lungs_a.jpeg"),
        cwd=tmp_path,
        env=shell_env(tmp_path, SLACK_BOT_TOKEN="xoxb-real-looking", SLACK_SIGNING_SECRET="s"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert flagged.returncode == 0, flagged.stderr
    assert "lungs_a.jpeg: " in flagged.stdout


def test_help_speaks_of_the_terminal_and_prints_no_slack_markup(tmp_path):
    result = run_shell(tmp_path, "/cxr help\n/cxr\tstatus\n")
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "type its path" in out and "in a DM" not in out
    assert "`" not in out and ":arrow_forward:" not in out
    assert f"Serving: local {BUNDLED}" in out  # "/cxr<TAB>status" is /cxr status
    assert "Unhandled request" not in result.stderr
    assert "will be unused" not in result.stderr


def test_output_cut_short_by_head_ends_quietly(tmp_path, images):
    script = "\n".join(["/cxr help"] * 20 + [str(images / "lungs_a.jpeg")])
    result = subprocess.run(
        f"{sys.executable} -m bot | head -n 2",
        shell=True,
        input=script,
        cwd=tmp_path,
        env=shell_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert len(result.stdout.splitlines()) == 2
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr


def test_a_missing_setting_is_named_once(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,
        env=shell_env(tmp_path, SLACK_APP_TOKEN="xapp-1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("SLACK_BOT_TOKEN: missing") == 1


def test_a_message_posted_while_at_the_prompt_redraws_it_with_what_was_typed(tmp_path):
    import io

    from bot.settings import Settings
    from bot.shell.session import PROMPT, Shell

    class Typed:
        @staticmethod
        def get_line_buffer() -> str:
            return "~/xrays/ch"

    out = io.StringIO()
    shell = Shell(Settings(cxr_db_path=tmp_path / "cxr.db"), io.StringIO(), out)
    shell._at_prompt, shell._readline = True, Typed()
    background = threading.Thread(target=shell.say, args=("Model started.", "cxr-bot> "))
    background.start()
    background.join()
    shell.say("typed by the main thread")  # not at the prompt's line: no redraw
    shell.loop.close()
    assert out.getvalue() == (
        f"\r\x1b[Kcxr-bot> Model started.\n{PROMPT}~/xrays/ch" + "typed by the main thread\n"
    )


def test_dicom_paths_are_screened_with_or_without_an_extension(tmp_path):
    from tests.synthetic_dicom import dicom_bytes, xray_values

    folder = tmp_path / "pacs"
    folder.mkdir()
    (folder / "IM000001").write_bytes(
        dicom_bytes(xray_values(1), WindowCenter=2000, WindowWidth=3000)
    )
    (folder / "chest.dcm").write_bytes(dicom_bytes(xray_values(2), photometric="MONOCHROME1"))
    (folder / "notes.txt").write_text("not an image")
    result = run_shell(tmp_path, f"{folder}\n")
    assert result.returncode == 0, result.stderr
    assert "IM000001: " in result.stdout and "chest.dcm: " in result.stdout
    assert result.stdout.count(f"Model: local {BUNDLED}") == 2
    assert "notes.txt" not in result.stdout  # a folder gives its images only
    assert result.stdout.count("carries patient identifiers (") == 2  # kinds, never values
    assert "In Slack, post a de-identified copy, not this file" in result.stdout
    assert "DOE^JANE" not in result.stdout and "4815162342" not in result.stdout


def test_a_second_session_in_the_same_folder_answers_every_xray_again(tmp_path, images):
    """Message timestamps never repeat across runs, so a new session's X-rays never collide
    with those recorded by the last one; and X-rays a stopped session left unanswered are
    reported once, not retried against a stand-in that is gone."""
    first = run_shell(tmp_path, str(images / "lungs_a.jpeg"))
    assert first.returncode == 0 and "lungs_a.jpeg: " in first.stdout
    import sqlite3

    conn = sqlite3.connect(tmp_path / "cxr.db")
    conn.execute(  # what a shell killed mid-folder leaves behind
        "INSERT INTO uploads (channel, ts, thread_ts, user, files, received_at)"
        " VALUES ('D0SHELL01', '1.000001', '1.000001', 'U0SHELLME', ?, '2026-01-01T00:00:00')",
        (json.dumps([{"file_id": "F1", "name": "lost.png", "url": "http://127.0.0.1:1/x"}]),),
    )
    conn.commit()
    conn.close()
    second = run_shell(tmp_path, f"{images / 'lungs_a.jpeg'}\n{images / 'lungs_b.png'}")
    out = second.stdout
    assert second.returncode == 0, second.stderr
    assert "lungs_a.jpeg: " in out and "lungs_b.png: " in out
    assert out.count("from the last session were never answered") == 1 and "lost.png" in out
    assert "only download files hosted by Slack" not in out


def test_a_slow_commands_note_comes_first_and_only_when_the_slow_work_will_happen(tmp_path):
    done = run_shell(
        tmp_path,
        "/cxr export s3://bucket/reviewed\n/cxr train s3://bucket/xrays\n/cxr export s3://x/y\n",
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    fetching = out.index("Fetching the reviewed images for s3://bucket/reviewed")
    assert fetching < out.index("There are no reviewed images to export yet")  # as in Slack
    assert "/cxr train manages a Rekognition Custom Labels model" in out
    assert "Checking" not in out  # no training to check without Rekognition: refused at once
    assert "I can't write there" in out and "Fetching the reviewed images for s3://x/y" not in out
