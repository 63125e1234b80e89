"""No patient data in logs at any level: EXIF text never reaches a line; records keep their keys."""

from __future__ import annotations

import io
import json
import logging

import pytest
from PIL import Image, PngImagePlugin

from bot import log
from tests.harness import BotHarness, replies_in_thread
from tests.synthetic import chest_xray
from tests.test_core_loop import CHANNEL, expect_detect

# Short values (Pillow's debug lines print only tags shorter than 32 bytes or so).
PLANTED = {
    0x010E: "Roe^Jane 19610402",  # ImageDescription
    0x013B: "MRN-00424242",  # Artist
    0x8298: "St Elsewhere Ward 7",  # Copyright
    0x010F: "PATIENTMAKE",  # Make
    0x0131: "Dr Quack Soft",  # Software
}


def exif_jpeg() -> bytes:
    exif = Image.Exif()
    for tag, value in PLANTED.items():
        exif[tag] = value
    buffer = io.BytesIO()
    chest_xray(seed=3, size=(900, 1000)).save(buffer, format="JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def png_with_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "Roe^Jane 19610402")
    info.add_text("Title", "MRN-00424242")
    buffer = io.BytesIO()
    chest_xray(seed=4, size=(900, 1000)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


@pytest.fixture
def debug_log():
    """The production log set-up at DEBUG, into a buffer; Pillow then turns itself up too."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    saved_levels = {name: logging.getLogger(name).level for name in log.QUIET_LIBRARIES}
    stream = io.StringIO()
    log.configure("DEBUG", "json", stream=stream)
    logging.getLogger("PIL").setLevel(logging.DEBUG)  # a library's own level cannot undo it
    yield stream
    root.handlers[:], _ = saved
    root.setLevel(saved[1])
    for name, level in saved_levels.items():
        logging.getLogger(name).setLevel(level)


async def test_exif_and_png_text_never_reach_the_debug_log(slack, rekognition, tmp_path, debug_log):
    expect_detect(rekognition, pneumonia=0.2, times=2)
    harness = await BotHarness(slack, tmp_path / "cxr.db", rekognition=rekognition).start()
    try:
        envelope = await harness.share(
            CHANNEL, [("scan.jpeg", exif_jpeg()), ("scan.png", png_with_text())]
        )
        await harness.drain()
    finally:
        await harness.stop()
    replies = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert "Normal" in replies[0]["text"]  # the images were decoded (and EXIF read) for real
    logged = debug_log.getvalue()
    assert logging.getLogger().level == logging.DEBUG and '"upload.answered"' in logged
    for value in PLANTED.values():
        assert value not in logged
        assert value.encode().hex() not in logged
    assert "19610402" not in logged and "00424242" not in logged


def test_pillow_would_have_logged_the_exif_without_the_filter(caplog):
    """The premise of the test above: Pillow's DEBUG lines carry short EXIF values."""
    with caplog.at_level(logging.DEBUG, logger="PIL"):
        Image.open(io.BytesIO(exif_jpeg())).getexif()
    assert "Roe^Jane 19610402" in caplog.text


def test_extra_fields_never_overwrite_the_records_own_keys():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    log.configure("INFO", "json", stream=stream)
    try:
        logging.getLogger("bot.test").info(
            "upload.accepted",
            extra={"ts": "1760000001.000002", "level": "x", "event": "forged", "channel": "C1"},
        )
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    entry = json.loads(stream.getvalue().splitlines()[-1])
    assert entry["event"] == "upload.accepted" and entry["level"] == "info"
    assert entry["ts"].startswith("20") and entry["ts"] != "1760000001.000002"
    assert entry["extra_ts"] == "1760000001.000002" and entry["extra_event"] == "forged"
    assert entry["channel"] == "C1"
