"""De-identified copies of X-ray files, for `cxr deidentify`: what to post where PHI may not go.

DICOM: dicognito (a maintained anonymizer) replaces every person name, every UID, the patient
and order IDs, addresses, institution and station names, and shifts every date and time by
one random offset per run; UIDs are remapped the same way for every file of a run, so a study
stays a study. On top of it, this module removes private tags, overlays and curves (which can
hold drawn text) and the free-text and patient-description attributes that PS3.15 Table E.1-1
(the Basic Profile) marks X, listed in `REMOVED`. The pixel data is copied unchanged, so a file
whose pixels carry burned-in text (BurnedInAnnotation YES) is refused: only its pixels could
fix it.

Images: JPEGs lose every APPn segment but JFIF and Adobe (EXIF, XMP, IPTC, ICC) and their
comments, without re-encoding; other images (and JPEGs that need their EXIF rotation applied)
become PNGs of the pixels alone. Pixels are not checked for burned-in text.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps

from bot.core.dicom import is_dicom, read_dataset

# PS3.15 Table E.1-1 rows with action X (remove) that dicognito leaves in place.
REMOVED = (
    "AcquisitionComments",
    "AdditionalPatientHistory",
    "AdmittingDiagnosesCodeSequence",
    "AdmittingDiagnosesDescription",
    "Allergies",
    "ContentSequence",
    "CountryOfResidence",
    "DerivationDescription",
    "DeviceSerialNumber",
    "EthnicGroup",
    "FrameComments",
    "ImageComments",
    "InstitutionalDepartmentName",
    "InterpretationText",
    "LastMenstrualDate",
    "MedicalAlerts",
    "OtherPatientIDsSequence",
    "PatientAge",
    "PatientBirthTime",
    "PatientComments",
    "PatientSize",
    "PatientState",
    "PatientWeight",
    "PerformedProcedureStepDescription",
    "PregnancyStatus",
    "ProtocolName",
    "ReasonForStudy",
    "RegionOfResidence",
    "RequestAttributesSequence",
    "RequestedProcedureDescription",
    "SeriesDescription",
    "SmokingStatus",
    "SpecialNeeds",
    "StudyComments",
    "StudyDescription",
    "TextComments",
)


METHOD = "CXR-BOT DEIDENTIFY: BASIC PROFILE X ROWS, NO PRIVATE TAGS"


class Refused(Exception):
    """A file this tool will not de-identify; the message says why and what to do."""


@dataclass(frozen=True)
class Copy:
    data: bytes
    extension: str  # ".dcm", ".jpg" or ".png"


class Deidentifier:
    """One run: one anonymizer, so UIDs and date shifts are consistent across its files."""

    def __init__(self, seed: str | None = None) -> None:
        from dicognito.anonymizer import Anonymizer

        self._anonymizer = Anonymizer(seed=seed)

    def copy(self, data: bytes) -> Copy:
        if is_dicom(data):
            return Copy(self.dicom(data), ".dcm")
        return strip_image(data)

    def dicom(self, data: bytes) -> bytes:
        ds = read_dataset(data)
        if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
            raise Refused(
                "its pixels carry burned-in text (BurnedInAnnotation YES), which removing tags "
                "cannot fix: black out the text in a DICOM editor, or export a cropped image"
            )
        pixels_before = ds.get("PixelData")
        ds.remove_private_tags()
        for element in list(ds):  # curves (50xx) and overlays (60xx) can hold drawn text
            group = element.tag.group
            if group % 2 == 0 and (0x5000 <= group <= 0x501E or 0x6000 <= group <= 0x601E):
                del ds[element.tag]
        for keyword in REMOVED:
            if keyword in ds:
                delattr(ds, keyword)
        self._anonymizer.anonymize(ds)
        methods = ds.get("DeidentificationMethod", [])
        methods = list(methods) if not isinstance(methods, str) else [methods]
        ds.DeidentificationMethod = [*methods, METHOD]
        if ds.get("PixelData") != pixels_before:
            raise RuntimeError("the anonymizer changed the pixel data")
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        return buffer.getvalue()


def strip_image(data: bytes) -> Copy:
    """The image without its metadata (see the module's docstring)."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception:
        raise Refused("it isn't an image or a DICOM file I can read") from None
    if image.format == "JPEG" and image.getexif().get(0x0112, 1) == 1:
        return Copy(strip_jpeg(data), ".jpg")
    image = ImageOps.exif_transpose(image)
    pixels = Image.frombytes(image.mode, image.size, image.tobytes())  # nothing but pixels
    if image.mode == "P":
        pixels.putpalette(image.getpalette() or [])
    buffer = io.BytesIO()
    pixels.save(buffer, format="PNG")
    return Copy(buffer.getvalue(), ".png")


_KEEP = {0xE0, 0xEE}  # APP0 (JFIF) and APP14 (Adobe: how to read the colours)
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


def strip_jpeg(data: bytes) -> bytes:
    """A JPEG's bytes without APP1-APP15 (but Adobe's APP14) and COM, before the scan."""
    if data[:2] != b"\xff\xd8":
        raise Refused("it isn't a JPEG")
    out = bytearray(b"\xff\xd8")
    i = 2
    while i < len(data):
        if data[i] != 0xFF:
            raise Refused("its JPEG structure is damaged")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE:
            out += data[i : i + 2]
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        segment = data[i : i + 2 + length]
        if marker == 0xDA:  # start of scan: the rest is image data
            out += data[i:]
            return bytes(out)
        if not ((0xE1 <= marker <= 0xEF and marker not in _KEEP) or marker == 0xFE):
            out += segment
        i += 2 + length
    raise Refused("its JPEG has no image data")
