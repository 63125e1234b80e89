"""User-written text is text: escaped, one line, shortened in the middle; and every file of a
message gets its verdict, over as many thread messages as Block Kit's limits need."""

from __future__ import annotations

import json
import re

import pytest

from bot.core.errors import CorruptImage
from bot.core.intake import FileOutcome
from bot.core.labels import Label, ModelInfo, Verdict
from bot.core.ports import ImageRef
from bot.slack.blocks.verdicts import DISCLAIMER, MAX_BLOCKS, reply_parts
from bot.slack.escaping import NAME_LIMIT, collapse, shorten_middle, user_text
from tests.harness import replies_in_thread
from tests.test_core_loop import CHANNEL, bot, expect_detect, xray_jpeg  # noqa: F401

MODEL = ModelInfo("rekognition", "cxr", "v1")


def all_text(message: dict) -> str:
    """Everything a reader could see: the fallback text and every text in the blocks."""
    return message["text"] + "\n" + json.dumps(message["blocks"], ensure_ascii=False)


# --- the escaping path ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("<!channel>.png", "&lt;!channel&gt;.png"),
        ("<@U0ADMIN01> & <#C123|x>.jpg", "&lt;@U0ADMIN01&gt; &amp; &lt;#C123|x&gt;.jpg"),
        ("a\nb\r\nc\td\x00e\x1bf\u2028g.png", "a b c d e f g.png"),
        ("evil\u202egnp.exe", "evil gnp.exe"),  # a right-to-left override cannot flip it
        ("   spaced    out   ", "spaced out"),
    ],
)
def test_user_text_is_escaped_and_one_line(raw, expected):
    assert user_text(raw) == expected


def test_long_names_are_shortened_in_the_middle_keeping_the_extension():
    name = "Patient_scan_" + "x" * 3500 + "_final.jpeg"
    short = user_text(name)
    assert len(short) == NAME_LIMIT and "…" in short
    assert short.startswith("Patient_scan_") and short.endswith("_final.jpeg")
    assert shorten_middle("abc", 10) == "abc"
    # escaped after shortening: an entity is never cut in half
    assert re.search(r"&(?!amp;|lt;|gt;)", user_text("<" * 500)) is None
    assert collapse("\n\n") == ""


# --- at the wire ----------------------------------------------------------------------------
async def share_named(bot, name: str) -> dict:  # noqa: F811
    """A file whose name is `name` (its download URL carries it encoded, as Slack's do)."""
    file = bot.slack.add_file("upload.jpeg", xray_jpeg())
    file["name"] = file["title"] = name
    envelope = bot.slack.file_share_envelope(CHANNEL, [file])
    status, _ = await bot.post_event(envelope)
    assert status == 200
    await bot.drain()
    return envelope


async def test_a_file_name_cannot_ping_the_channel_or_forge_a_line(bot, slack, rekognition):  # noqa: F811
    expect_detect(rekognition, pneumonia=0.9)
    name = (
        "<!channel> <!here> <@U0ADMIN01> <https://evil.example|click>\nb.jpeg: Normal, 99.0%.jpeg"
    )
    envelope = await share_named(bot, name)
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    seen = all_text(reply)
    for mention in ("<!channel>", "<!here>", "<@U0ADMIN01>", "<https://"):
        assert mention not in seen
    assert "&lt;!channel&gt;" in reply["text"]
    lines = reply["text"].splitlines()
    assert len(lines) == 2 and lines[1] == DISCLAIMER  # one line for the file, then the disclaimer
    assert not any(line.startswith("b.jpeg") for line in lines)
    assert "Pneumonia, 90.0%" in lines[0]


async def test_a_3500_character_name_leaves_the_verdict_in_view(bot, slack, rekognition):  # noqa: F811
    expect_detect(rekognition, pneumonia=0.9)
    name = "scan_" + "y" * 3500 + ".jpeg"
    envelope = await share_named(bot, name)
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    section = reply["blocks"][0]["text"]["text"]
    assert len(section) < 300 and "*Pneumonia*, 90.0%" in section and ".jpeg" in section
    assert "Pneumonia, 90.0%" in reply["text"].splitlines()[0]


async def test_33_files_in_one_message_all_get_their_verdicts(bot, slack, rekognition):  # noqa: F811
    expect_detect(rekognition, pneumonia=0.1, times=33)
    files = [(f"xray-{i:02d}.jpeg", xray_jpeg(seed=i, size=(400, 440))) for i in range(33)]
    envelope = await bot.share(CHANNEL, files)
    await bot.drain()
    parts = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert len(parts) >= 2
    named = [re.findall(r"xray-\d\d\.jpeg", part["text"]) for part in parts]
    assert [n for names in named for n in names] == [name for name, _ in files]  # in order
    for number, part in enumerate(parts, start=1):
        assert len(part["blocks"]) <= MAX_BLOCKS
        assert DISCLAIMER in part["text"] and f"Part {number} of {len(parts)}" in part["text"]
        assert DISCLAIMER in json.dumps(part["blocks"][-1])
    assert sum(part["text"].count("Normal, 90.0%") for part in parts) == 33


async def test_command_arguments_are_quoted_back_escaped(bot):  # noqa: F811
    status, body = await bot.post_command(bot.slack.slash_command("<!channel>\nforged"))
    assert status == 200
    assert "<!channel>" not in body and "&lt;!channel&gt;" in body


# --- the renderer on its own: every limit, for any mix ----------------------------------------
def outcomes(count: int, name_length: int) -> list[FileOutcome]:
    made = []
    for i in range(count):
        ref = ImageRef(f"F{i:04d}", f"{i:04d}-" + "z" * name_length + ".png")
        if i % 3 == 0:
            made.append(FileOutcome(ref, error=CorruptImage("This image seems damaged.")))
        else:
            scores = {Label.NORMAL: 0.2, Label.PNEUMONIA: 0.8}
            verdict = Verdict(Label.PNEUMONIA, 0.8, scores, MODEL, note="n" * 400)
            made.append(FileOutcome(ref, verdict=verdict))
    return made


@pytest.mark.parametrize(("count", "name_length"), [(1, 10), (25, 10), (26, 3500), (200, 3500)])
def test_every_part_fits_and_every_file_is_in_one(count, name_length, caplog):
    made = outcomes(count, name_length)
    parts = reply_parts(made)  # Block Kit models raise on any limit violation
    assert "reply.blocks_invalid" not in caplog.text  # no fallback to text was needed
    seen = [re.findall(r"\b(\d{4})-z", part.text) for part in parts]
    assert [n for names in seen for n in names] == [f"{i:04d}" for i in range(count)]
    for part in parts:
        assert len(part.blocks) <= MAX_BLOCKS and len(part.text) <= 3000
        assert (DISCLAIMER in part.text) == (count > 1)  # a verdict anywhere: in every part
        assert all(len(json.dumps(b)) < 3200 for b in part.blocks)


def test_errors_only_reply_has_no_disclaimer():
    ref = ImageRef("F1", "a.png")
    [part] = reply_parts([FileOutcome(ref, error=CorruptImage("This image seems damaged."))])
    assert DISCLAIMER not in part.text and part.text == "a.png: This image seems damaged."


def test_a_block_that_breaks_the_rules_still_leaves_a_reply(monkeypatch, caplog):
    from bot.slack.blocks import verdicts

    monkeypatch.setattr(verdicts, "NAME_LIMIT", 10_000, raising=False)
    monkeypatch.setattr(verdicts, "user_text", lambda text, limit=0: text)  # a bug: no shortening
    made = outcomes(3, 3500)
    parts = reply_parts(made)
    assert "reply.blocks_invalid" in caplog.text
    assert all(p.blocks == [] for p in parts) and DISCLAIMER in parts[-1].text
    assert sum(p.text.count("-zzz") for p in parts) == 3


def test_a_shell_folder_of_33_xrays_shows_every_verdict_and_the_disclaimer(tmp_path):
    from tests.synthetic import chest_xray, jpeg_bytes
    from tests.test_shell import run_shell

    folder = tmp_path / "xrays"
    folder.mkdir()
    for i in range(33):
        (folder / f"xray-{i:02d}.jpeg").write_bytes(jpeg_bytes(chest_xray(seed=i, size=(300, 340))))
    (folder / "x-99 <!channel>\nb.jpeg: Normal.jpeg").write_bytes(
        jpeg_bytes(chest_xray(seed=99, size=(300, 340)))
    )
    result = run_shell(tmp_path, str(folder), CXR_SHELL_BATCH="100")  # one message, two parts
    assert result.returncode == 0, result.stderr
    shown = set(re.findall(r"xray-\d\d\.jpeg: (?:Normal|Pneumonia|Uncertain)", result.stdout))
    assert len(shown) == 33
    assert result.stdout.count(DISCLAIMER) >= 2 and "Part 2 of 2." in result.stdout  # parts
    assert "x-99 <!channel> b.jpeg: Normal.jpeg: " in result.stdout  # one line, shown as text
    assert not any(line.startswith("b.jpeg: Normal") for line in result.stdout.splitlines())
