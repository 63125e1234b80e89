"""The local shell on a real pseudo-terminal, as a newcomer meets it: Ctrl-C, free text,
folders (empty, or the dataset's class folders), images with the same name."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pexpect
import pytest

from bot.ml.model_card import load_model_card
from tests.synthetic import chest_xray, jpeg_bytes
from tests.test_shell import shell_env

PROMPT = "you> "


def spawn(tmp_path: Path, **env: str) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "bot"],
        cwd=str(tmp_path),
        env=shell_env(tmp_path, TERM="dumb", **env),
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 200),
    )
    child.expect("local shell")
    child.expect(PROMPT)
    return child


def quit_(child: pexpect.spawn) -> None:
    child.sendline("quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def xray_folder(folder: Path, count: int, start: int = 0, pneumonia: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(start, start + count):
        image = chest_xray(seed, size=(300, 340), pneumonia=pneumonia)
        (folder / f"im{seed}.jpeg").write_bytes(jpeg_bytes(image))


def test_ctrl_c_gives_a_fresh_prompt_and_a_second_one_exits_130(tmp_path):
    child = spawn(tmp_path)
    child.sendintr()
    child.expect("press Ctrl-C again", timeout=5)  # at once, not after Enter
    child.expect(PROMPT, timeout=5)
    child.sendline("/cxr help")  # the shell still works
    child.expect("/cxr status")
    child.expect(PROMPT)
    time.sleep(2.5)  # a lone Ctrl-C later is a first one again
    child.sendintr()
    child.expect("press Ctrl-C again", timeout=5)
    child.expect(PROMPT, timeout=5)
    child.sendintr()
    child.expect(pexpect.EOF, timeout=30)
    child.close()
    assert child.exitstatus == 130
    assert "Traceback" not in child.before


def test_ctrl_c_stops_a_long_batch_and_returns_to_the_prompt(tmp_path):
    xray_folder(tmp_path / "many", 40)
    child = spawn(tmp_path, CXR_SHELL_BATCH="1")
    child.sendline(str(tmp_path / "many"))
    child.expect("40 images: sending them 1 at a time")
    child.expect(r"im0\.jpeg: (Normal|Pneumonia|Uncertain)")
    child.sendintr()
    child.expect("Stopped", timeout=20)
    child.expect(PROMPT, timeout=20)
    answered = child.before
    child.sendline("/cxr help")  # back at a working prompt
    child.expect("/cxr status")
    child.expect(PROMPT)
    quit_(child)
    assert "im39.jpeg:" not in answered  # the rest were never sent


def test_a_sentence_gets_one_reply_that_says_what_the_shell_takes(tmp_path):
    child = spawn(tmp_path)
    child.sendline("hello, can you look at this x-ray?")
    child.expect(PROMPT)
    reply = child.before
    quit_(child)
    assert reply.count("cxr-bot> ") == 1
    assert "I read paths to chest X-ray images or folders" in reply and "/cxr help" in reply
    assert "I can't find" not in reply


def test_missing_paths_get_one_line_naming_them(tmp_path):
    child = spawn(tmp_path)
    child.sendline("~/nope.jpeg ./gone/")
    child.expect(PROMPT)
    reply = child.before
    quit_(child)
    assert reply.count("cxr-bot> ") == 1
    assert "I can't find ~/nope.jpeg, ./gone/." in reply


def test_an_empty_folder_is_named_not_met_with_silence(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("no images here")
    child = spawn(tmp_path)
    child.sendline(str(tmp_path / "empty"))
    child.expect(PROMPT)
    empty = child.before
    child.sendline(str(tmp_path / "docs"))
    child.expect(PROMPT)
    docs = child.before
    quit_(child)
    assert f"{tmp_path / 'empty'} is empty: no images to screen." in empty
    assert "holds no images (1 other file)" in docs and "jpeg" in docs


def test_the_dataset_root_takes_its_class_folders_in_batches(tmp_path):
    root = tmp_path / "chest_xray"
    xray_folder(root / "NORMAL", 2)
    xray_folder(root / "PNEUMONIA", 3, start=10, pneumonia=True)
    child = spawn(tmp_path, CXR_SHELL_BATCH="2")
    child.sendline(str(root))
    child.expect(PROMPT, timeout=120)
    out = child.before
    quit_(child)
    assert "holds no images itself; taking those in NORMAL/ (2), PNEUMONIA/ (3)." in out
    assert "5 images: sending them 2 at a time" in out
    for name in ("im0", "im1", "im10", "im11", "im12"):
        assert f"{name}.jpeg: " in out
    assert out.count(f"Model: local {load_model_card().name}") == 5


def test_images_with_the_same_name_get_distinct_heatmaps(tmp_path):
    for folder, seed in (("a", 1), ("b", 2)):
        (tmp_path / folder).mkdir()
        image = chest_xray(seed, size=(320, 360), pneumonia=seed == 2)
        (tmp_path / folder / "chest.jpeg").write_bytes(jpeg_bytes(image))
    child = spawn(tmp_path)
    child.sendline(f"{tmp_path / 'a' / 'chest.jpeg'} {tmp_path / 'b' / 'chest.jpeg'}")
    child.expect(PROMPT)
    first = child.before
    child.sendline(str(tmp_path / "a" / "chest.jpeg"))  # the same image again, later
    child.expect(PROMPT)
    again = child.before
    quit_(child)
    maps = tmp_path / "cxr-heatmaps"
    assert "cxr-heatmaps/chest-heatmap.png" in first
    assert "cxr-heatmaps/chest-heatmap-2.png" in first
    assert "cxr-heatmaps/chest-heatmap-3.png" in again
    one, two, three = (
        maps / n for n in ("chest-heatmap.png", "chest-heatmap-2.png", "chest-heatmap-3.png")
    )
    assert one.read_bytes() != two.read_bytes()  # two images, two maps
    assert one.read_bytes() == three.read_bytes()  # the same image, the same map


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_BOT_TOKEN is set, but neither SLACK_APP_TOKEN"),
        ({}, "No Slack tokens set: local shell"),
    ],
)
def test_the_greeting_says_why_this_is_the_shell(tmp_path, env, expected):
    child = pexpect.spawn(
        sys.executable,
        ["-m", "bot"],
        cwd=str(tmp_path),
        env=shell_env(tmp_path, TERM="dumb", **env),
        encoding="utf-8",
        timeout=60,
    )
    child.expect(PROMPT)
    greeting = child.before
    quit_(child)
    assert expected in greeting
    assert "token` will be unused" not in greeting


def test_with_tokens_and_the_shell_flag_the_greeting_says_so(tmp_path):
    env = shell_env(tmp_path, TERM="dumb", SLACK_BOT_TOKEN="xoxb-1", SLACK_APP_TOKEN="xapp-1")
    child = pexpect.spawn(
        sys.executable, ["-m", "bot", "--shell"], cwd=str(tmp_path), env=env, encoding="utf-8"
    )
    child.expect(PROMPT, timeout=60)
    greeting = child.before
    quit_(child)
    assert "Slack tokens are set, but --shell asked for the local shell" in greeting
    assert "No Slack tokens" not in greeting and "will be unused" not in greeting
