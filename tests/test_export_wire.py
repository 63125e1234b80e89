"""`/cxr export` to moto's S3 and `cxr export DIR` to a folder: the reviewed images fetched
again from Slack, de-identified (no EXIF, no PNG text, no name), laid out as Normal/ and
Pneumonia/ with a manifest naming what couldn't be fetched; exported cases then stay out of a
promotion's held-out comparison."""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import pytest
from moto import mock_aws
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from bot.cli import export_to_folder
from bot.training.data import list_samples
from tests.harness import BotHarness, replies_in_thread
from tests.synthetic import chest_xray
from tests.test_core_loop import expect_detect
from tests.test_review_wire import CHANNEL, REVIEWER, press

ADMIN = "U0ADMIN01"
BUCKET = "cxr-train"
PATIENT = "Jane Doe 1970-01-01"


def jpeg_with_exif(seed: int) -> bytes:
    exif = Image.Exif()
    exif[0x010E] = PATIENT  # ImageDescription
    exif[0x013B] = PATIENT  # Artist
    buffer = io.BytesIO()
    chest_xray(seed=seed, size=(600, 640)).save(buffer, format="JPEG", exif=exif, comment=PATIENT)
    return buffer.getvalue()


def png_with_text(seed: int) -> bytes:
    info = PngInfo()
    info.add_text("PatientName", PATIENT)
    buffer = io.BytesIO()
    chest_xray(seed=seed, size=(600, 640)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
async def bot(slack, rekognition, tmp_path, s3):
    harness = BotHarness(
        slack,
        tmp_path / "cxr.db",
        rekognition=rekognition,
        cxr_reviewers=[REVIEWER],
        cxr_admins=[ADMIN],
    )
    await harness.start()
    yield harness
    await harness.stop()


async def reviewed(bot, rekognition, name: str, data: bytes, label: str) -> dict[str, Any]:
    expect_detect(rekognition, 0.9)
    envelope = await bot.share(CHANNEL, [(name, data)])
    await bot.drain()
    [reply] = replies_in_thread(bot.slack, CHANNEL, envelope["event"]["ts"])
    await press(bot, reply, label, REVIEWER)
    return envelope


async def four_reviewed_cases(bot, slack, rekognition) -> None:
    await reviewed(bot, rekognition, "jane-doe-chest.jpeg", jpeg_with_exif(1), "Pneumonia")
    await reviewed(bot, rekognition, "jane.png", png_with_text(2), "Normal")
    await reviewed(bot, rekognition, "blurry.png", png_with_text(3), "Not assessable")
    gone = await reviewed(bot, rekognition, "deleted.png", png_with_text(4), "Normal")
    slack.files.pop(gone["event"]["files"][0]["id"])  # deleted in Slack since


async def test_export_to_s3_writes_the_layout_without_metadata(bot, slack, rekognition, s3):
    await four_reviewed_cases(bot, slack, rekognition)

    await bot.post_command(slack.slash_command(f"export s3://{BUCKET}/reviewed", user=REVIEWER))
    await bot.drain()
    assert slack.responses[-1]["text"].startswith("Sorry, only the bot's admins")
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0

    await bot.post_command(slack.slash_command(f"export s3://{BUCKET}/reviewed", user=ADMIN))
    await bot.drain()
    answer = slack.responses[-1]["text"]
    assert answer.startswith(
        f"Exported 2 reviewed images to s3://{BUCKET}/reviewed/ (1 Normal, 1 Pneumonia)"
    )
    assert "1 could not be fetched (deleted in Slack?)" in answer
    assert "1 reviewed as not assessable were left out" in answer

    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
    assert len(keys) == 3 and keys[-1] == "reviewed/manifest.json"
    assert keys[0].startswith("reviewed/Normal/slack-") and keys[0].endswith(".png")
    assert keys[1].startswith("reviewed/Pneumonia/slack-")
    for key in keys[:2]:
        data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert b"Jane" not in data and b"jane" not in data
        image = Image.open(io.BytesIO(data))
        assert image.format == "PNG" and image.mode == "L" and image.size == (600, 640)
        assert image.info == {} or set(image.info) <= {"dpi"}
        assert not image.getexif()
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=keys[-1])["Body"].read())
    assert sorted(e["key"] for e in manifest["written"]) == [
        k.removeprefix("reviewed/") for k in keys[:2]
    ]
    assert len(manifest["not_fetched"]) == 1 and manifest["not_assessable_skipped"] == 1
    assert "Jane" not in json.dumps(manifest) and CHANNEL not in json.dumps(manifest)

    # a prefix is the user's text: quoted back escaped, never a mention
    await bot.post_command(slack.slash_command(f"export s3://{BUCKET}/a<!channel>b", user=ADMIN))
    await bot.drain()
    quoted = slack.responses[-1]
    assert "<!channel>" not in quoted["text"] and "&lt;!channel&gt;" in quoted["text"]
    assert "<!channel>" not in str(quoted["blocks"])

    # the two exported cases are recorded: no held-out comparison counts them any more
    assert len(await bot.services.reviews.off_loop(bot.services.reviews.exported)) == 2
    assert (await bot.services.audit.recent(1))[0].action == "export"


async def test_cxr_export_dir_keeps_one_message_in_one_group(bot, slack, rekognition, tmp_path):
    expect_detect(rekognition, 0.9, times=2)
    envelope = await bot.share(
        CHANNEL, [("a.png", png_with_text(5)), ("b.jpeg", jpeg_with_exif(6))]
    )
    await bot.drain()
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    message = slack.find_message(CHANNEL, reply["ts"])
    first, second = [b for b in message["blocks"] if b["type"] == "actions"]
    for block, label in ((first, "Pneumonia"), (second, "Normal")):
        [element] = [e for e in block["elements"] if e["text"]["text"] == label]
        payload = slack.block_action(
            {**element, "block_id": block["block_id"]},
            message=slack.find_message(CHANNEL, reply["ts"]),
            channel=CHANNEL,
            user=REVIEWER,
        )
        await bot.post_action(payload)
        await bot.drain()

    out = tmp_path / "export"
    assert await export_to_folder(bot.settings, out) == 0
    samples = list_samples(out)
    assert sorted(s.label for s in samples) == [0, 1]  # one Normal, one Pneumonia
    assert len({s.patient for s in samples}) == 1  # one Slack message, one group
    assert json.loads((out / "manifest.json").read_text())["not_fetched"] == []
