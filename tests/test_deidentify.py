"""`cxr deidentify`: DICOM and image copies without patient identifiers, pixels unchanged."""

from __future__ import annotations

import io

import numpy as np
import pydicom
from PIL import Image, PngImagePlugin
from pydicom.uid import generate_uid

from bot.cli import main
from bot.core.phi import find_phi
from tests.synthetic import chest_xray, jpeg_bytes
from tests.synthetic_dicom import PLANTED, dicom_bytes, dicom_dataset, to_bytes, xray_values


def planted_dicom(study: str, series: str, seed: int = 0, **tags) -> bytes:
    ds = dicom_dataset(
        xray_values(seed),
        StudyInstanceUID=study,
        SeriesInstanceUID=series,
        ImageComments="Jane Doe, ward 7",
        **tags,
    )
    ds.add_new(0x00090010, "LO", "ACME PACS")  # a private creator and a private tag
    ds.add_new(0x00091001, "LO", "DOE^JANE^Q")
    ds.add_new(0x60003000, "OW", b"\x01\x00" * 64)  # overlay data
    return to_bytes(ds)


def test_dicom_copies_lose_identifiers_keep_pixels_and_keep_a_study_together(tmp_path, capsys):
    study, series = generate_uid(), generate_uid()
    originals = [planted_dicom(study, series, seed) for seed in (1, 2)]
    paths = []
    for number, data in enumerate(originals):
        paths.append(tmp_path / f"DOE_JANE_{number}.dcm")
        paths[-1].write_bytes(data)
    out = tmp_path / "clean"
    assert main(["deidentify", *map(str, paths), "--out", str(out)]) == 0
    copies = [out / "0001.dcm", out / "0002.dcm"]
    assert capsys.readouterr().out.split() == [
        str(paths[0]),
        str(copies[0]),
        str(paths[1]),
        str(copies[1]),
    ]
    before = [pydicom.dcmread(io.BytesIO(d)) for d in originals]
    after = [pydicom.dcmread(c) for c in copies]
    for old, new, path in zip(before, after, copies, strict=True):
        raw = path.read_bytes()
        for value in [*PLANTED, "ACME PACS", "Jane Doe"]:
            assert value.encode() not in raw, value
        assert new.PixelData == old.PixelData  # pixel data unchanged
        assert not any(element.tag.is_private for element in new)
        assert not any(element.tag.group == 0x6000 for element in new)
        assert "ImageComments" not in new
        assert new.SOPInstanceUID != old.SOPInstanceUID
        assert new.StudyInstanceUID != study
        assert find_phi(raw) == []  # the bot won't warn about a de-identified copy
    assert after[0].StudyInstanceUID == after[1].StudyInstanceUID  # one study still
    assert after[0].SeriesInstanceUID == after[1].SeriesInstanceUID
    assert after[0].SOPInstanceUID != after[1].SOPInstanceUID


def test_a_dicom_with_burned_in_text_is_refused(tmp_path, capsys):
    source = tmp_path / "burned.dcm"
    source.write_bytes(dicom_bytes(BurnedInAnnotation="YES"))
    assert main(["deidentify", str(source), "--out", str(tmp_path / "clean")]) == 1
    assert "burned-in text" in capsys.readouterr().err
    assert list((tmp_path / "clean").iterdir()) == []


def test_jpeg_metadata_is_stripped_without_re_encoding(tmp_path):
    exif = Image.Exif()
    exif[0x010E] = "Jane Doe MRN 4815162342"
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:creator>Jane Doe</dc:creator></x:xmpmeta>'
    buffer = io.BytesIO()
    chest_xray(3, size=(300, 320)).save(
        buffer, format="JPEG", quality=90, exif=exif, xmp=xmp, comment=b"DOE^JANE 19710203"
    )
    source = tmp_path / "photo.jpeg"
    source.write_bytes(buffer.getvalue())
    assert find_phi(source.read_bytes()) != []
    assert main(["deidentify", str(source), "--out", str(tmp_path / "clean")]) == 0
    copy = (tmp_path / "clean" / "0001.jpg").read_bytes()
    for value in (b"Jane", b"4815162342", b"DOE^JANE", b"19710203", b"Exif", b"xmpmeta"):
        assert value not in copy
    original_scan = buffer.getvalue()[buffer.getvalue().index(b"\xff\xda") :]
    assert copy.endswith(original_scan)  # the compressed image itself, byte for byte
    assert find_phi(copy) == []


def test_a_rotated_jpeg_becomes_an_upright_png_of_its_pixels(tmp_path):
    source = tmp_path / "rotated.jpg"
    source.write_bytes(jpeg_bytes(chest_xray(4, size=(300, 200)), exif_orientation=6))
    assert main(["deidentify", str(source), "--out", str(tmp_path / "clean")]) == 0
    assert Image.open(source).size == (200, 300)  # stored on its side, tagged to turn
    copy = Image.open(tmp_path / "clean" / "0001.png")
    assert copy.size == (300, 200) and not copy.info.get("exif")


def test_png_text_is_stripped_and_pixels_kept(tmp_path):
    image = chest_xray(5, size=(256, 256))
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "patient Jane Doe")
    source = tmp_path / "scan.png"
    image.save(source, pnginfo=info)
    assert main(["deidentify", str(source), "--out", str(tmp_path / "clean")]) == 0
    copy = Image.open(tmp_path / "clean" / "0001.png")
    assert copy.text == {}
    assert np.array_equal(np.asarray(copy), np.asarray(image))


def test_files_it_cannot_read_are_named_and_the_rest_copied(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("Jane Doe")
    good = tmp_path / "good.dcm"
    good.write_bytes(dicom_bytes())
    argv = ["deidentify", str(tmp_path / "notes.txt"), str(tmp_path / "nope.dcm"), str(good)]
    assert main([*argv, "--out", str(tmp_path / "clean")]) == 1
    err = capsys.readouterr().err
    assert "notes.txt: not copied" in err and "nope.dcm: can't read it" in err
    assert (tmp_path / "clean" / "0003.dcm").is_file()
