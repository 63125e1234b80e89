"""Patient identifiers in posted files: kinds of field found, never their values; and a full
run with a DICOM full of them leaves none in logs, the database or any Slack or AWS request."""

from __future__ import annotations

import io
import logging

from PIL import Image, PngImagePlugin

from bot import log
from bot.core.phi import find_phi
from tests.harness import BotHarness, labels_response, open_database, replies_in_thread
from tests.synthetic import chest_xray, jpeg_bytes, png_bytes
from tests.synthetic_dicom import PLANTED, dicom_bytes, xray_values

CHANNEL = "C0XRAYS01"


def test_dicom_patient_fields_are_named_by_kind():
    kinds = find_phi(dicom_bytes())
    assert {"patient name", "patient ID", "birth date", "accession number", "institution"} <= set(
        kinds
    )
    assert not any(value in " ".join(kinds) for value in PLANTED)


def test_a_dicom_without_patient_fields_has_none():
    assert find_phi(dicom_bytes(patient=False)) == []


def test_the_burned_in_flag_is_a_finding_even_without_patient_fields():
    assert find_phi(dicom_bytes(patient=False, BurnedInAnnotation="YES")) == [
        "burned-in annotation"
    ]
    assert find_phi(dicom_bytes(patient=False, BurnedInAnnotation="NO")) == []


def test_exif_text_that_looks_like_an_identifier_is_named():
    exif = Image.Exif()
    exif[0x010E] = "Jane Doe DOB 03/02/1971 MRN 4815162342"  # ImageDescription
    exif[0x0131] = "Viewer 2.1"  # Software: not free text about a person
    buffer = io.BytesIO()
    chest_xray(size=(300, 300)).save(buffer, format="JPEG", exif=exif)
    assert find_phi(buffer.getvalue()) == ["EXIF text (ImageDescription)"]


def test_png_text_and_xmp_that_look_like_identifiers_are_named():
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "patient Jane Doe")
    info.add_text("Software", "Pillow")
    buffer = io.BytesIO()
    chest_xray(size=(300, 300)).save(buffer, format="PNG", pnginfo=info)
    assert find_phi(buffer.getvalue()) == ["PNG text (Comment)"]

    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
        b'22-rdf-syntax-ns#"><rdf:Description dc:creator="Jane Doe" xmlns:dc="http://purl.org/'
        b'dc/elements/1.1/"/></rdf:RDF></x:xmpmeta>'
    )
    buffer = io.BytesIO()
    chest_xray(size=(300, 300)).save(buffer, format="JPEG", xmp=xmp)
    assert find_phi(buffer.getvalue()) == ["XMP text"]


def test_plain_images_and_unreadable_bytes_have_none():
    assert find_phi(jpeg_bytes(chest_xray())) == []
    assert find_phi(png_bytes(chest_xray())) == []
    assert find_phi(b"not an image at all") == []


async def test_a_full_run_leaves_no_planted_value_in_logs_database_or_requests(
    slack, rekognition, tmp_path
):
    sent_to_aws: list[bytes] = []
    rekognition.meta.events.register(
        "before-parameter-build.rekognition.DetectCustomLabels",
        lambda params, **_: sent_to_aws.append(params["Image"]["Bytes"]),
    )
    rekognition.stubber.add_response("detect_custom_labels", labels_response(0.9))
    data = dicom_bytes(xray_values(bits=12), WindowCenter=2000, WindowWidth=3000)
    assert all(value.encode() in data for value in ("DOE^JANE", "4815162342"))  # planted

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    log.configure("DEBUG", "json", stream=stream)
    db = tmp_path / "cxr.db"
    harness = await BotHarness(slack, db, rekognition=rekognition).start()
    try:
        envelope = await harness.share(CHANNEL, [("IM000001.dcm", data)])
        await harness.drain()
    finally:
        await harness.stop()
        root.handlers[:], _ = saved
        root.setLevel(saved[1])

    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert "Pneumonia" in reply["text"]  # the DICOM was read and classified
    assert len(sent_to_aws) == 1 and sent_to_aws[0][:2] == b"\xff\xd8"  # a JPEG, not DICOM
    requests = [repr(call.params) for call in slack.calls]
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("cxr.db*"))
    for value in PLANTED:
        assert value not in stream.getvalue(), f"{value} in the log"
        assert value.encode() not in sent_to_aws[0], f"{value} sent to Rekognition"
        assert not any(value in request for request in requests), f"{value} sent to Slack"
        assert value.encode() not in stored, f"{value} in the database"


def test_the_notice_names_kinds_and_what_to_do_never_values():
    from bot.core.phi import phi_notice

    notice = phi_notice(find_phi(dicom_bytes(BurnedInAnnotation="YES")))
    assert "patient name" in notice and "burned-in annotation" in notice
    assert "delete it from Slack" in notice and "cxr deidentify" in notice
    assert not any(value in notice for value in PLANTED)
    assert "\n" not in notice


async def test_the_verdict_thread_names_the_kinds_of_identifier_never_values(slack, tmp_path):
    harness = await BotHarness(slack, tmp_path / "cxr.db").start()
    try:
        envelope = await harness.share(
            CHANNEL,
            [("IM000001", dicom_bytes(xray_values(3), WindowCenter=2000, WindowWidth=3000))],
        )
        await harness.drain()
    finally:
        await harness.stop()
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    shown = reply["text"] + repr(reply.get("blocks"))
    assert (
        "IM000001: Normal" in reply["text"]
        or "IM000001: Pneumonia" in reply["text"]
        or ("IM000001: Uncertain" in reply["text"])
    )  # extensionless, untyped, in a channel: downloaded, found to be DICOM, classified
    assert "patient identifiers (accession number, birth date" in shown
    assert "delete it from Slack" in shown and "cxr deidentify" in shown
    for value in PLANTED:
        assert value not in shown


async def test_with_refuse_phi_such_files_are_not_classified(slack, rekognition, tmp_path):
    harness = await BotHarness(
        slack, tmp_path / "cxr.db", rekognition=rekognition, cxr_refuse_phi=True
    ).start()
    clean = dicom_bytes(xray_values(4), patient=False, WindowCenter=2000, WindowWidth=3000)
    rekognition.stubber.add_response("detect_custom_labels", labels_response(0.9))
    try:
        envelope = await harness.share(
            CHANNEL, [("a.dcm", dicom_bytes(xray_values(3))), ("b.dcm", clean)]
        )
        await harness.drain()
    finally:
        await harness.stop()
    rekognition.stubber.assert_no_pending_responses()  # one call: the clean file only
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    a_line, b_line = reply["text"].splitlines()[:2]
    assert a_line.startswith("a.dcm: I don't read files that carry patient identifiers")
    assert "patient name" in a_line and "DOE" not in a_line
    assert b_line.startswith("b.dcm: Pneumonia, 90.0%") and "identifiers" not in b_line


async def test_an_extensionless_file_that_is_not_dicom_gets_a_kind_reply(slack, tmp_path):
    harness = await BotHarness(slack, tmp_path / "cxr.db").start()
    try:
        envelope = await harness.share(CHANNEL, [("README", b"just some text, no image")])
        await harness.drain()
    finally:
        await harness.stop()
    [reply] = replies_in_thread(slack, CHANNEL, envelope["event"]["ts"])
    assert reply["text"].startswith("README: I couldn't read this image")


async def test_the_database_keeps_no_file_names_and_a_resumed_upload_still_names_its_file(
    slack, tmp_path
):
    """File names can carry a patient's name: the store keeps the file's ID, type and size,
    and a resumed upload gets its name (and URL) back from files.info."""
    from datetime import UTC, datetime, timedelta

    from bot.core.ports import ImageRef, Upload
    from bot.state.uploads import UploadStore

    name = "DOE_JANE_19710203.jpeg"
    file = slack.add_file(name, jpeg_bytes(chest_xray(seed=3, size=(400, 440))))
    ref = ImageRef(file["id"], name, file["mimetype"], file["size"], file["url_private_download"])
    ts = slack.file_share_envelope(CHANNEL, [file])["event"]["ts"]  # posted, never delivered
    upload = Upload(CHANNEL, ts, ts, "U0CLINIC1", (ref,))
    db_path = tmp_path / "cxr.db"
    db = open_database(db_path)
    store = UploadStore(db)
    past = datetime.now(UTC) - timedelta(hours=1)
    assert await store.claim(upload, past, "a-run-that-died", timedelta(seconds=1))
    db.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("cxr.db*"))
    assert b"DOE_JANE" not in stored and b"19710203" not in stored
    assert file["id"].encode() in stored

    harness = await BotHarness(slack, db_path).start()  # resumes the lapsed upload
    try:
        await slack.wait_for(
            lambda: bool(replies_in_thread(slack, CHANNEL, upload.ts)), what="the resumed reply"
        )
        await harness.drain()
    finally:
        await harness.stop()
    [reply] = replies_in_thread(slack, CHANNEL, upload.ts)
    assert reply["text"].startswith(f"{name}: ")
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("cxr.db*"))
    assert b"DOE_JANE" not in stored


def test_malformed_patient_values_are_never_quoted_in_warnings_or_logs(caplog, recwarn):
    """pydicom quotes a malformed value when it meets one; the bot keeps it quiet."""
    from bot.core.imaging import decode

    bad = dicom_bytes(PatientBirthDate="1971-02-03 DOE^JANE", PatientAge="DOE^JANE 53Y")
    caplog.set_level(logging.DEBUG)
    assert "birth date" in find_phi(bad)
    decode(bad, max_side=224, max_pixels=60_000_000)
    said = caplog.text + " ".join(str(w.message) for w in recwarn)
    assert "DOE^JANE" not in said and "1971-02-03" not in said


def test_file_dates_and_software_names_written_by_tools_are_not_identifiers():
    info = PngImagePlugin.PngInfo()
    info.add_text("date:create", "2024-06-11T10:22:31+00:00")  # as ImageMagick writes
    info.add_text("date:modify", "2024-06-11T10:22:31+00:00")
    info.add_text("Software", "Adobe ImageReady 2.0")
    buffer = io.BytesIO()
    chest_xray(size=(300, 300)).save(buffer, format="PNG", pnginfo=info)
    assert find_phi(buffer.getvalue()) == []
