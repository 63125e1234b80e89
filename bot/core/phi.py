"""Patient identifiers a posted file carries: which kinds of field, never their values.

DICOM files name the patient in their tags, and may say the pixels carry burned-in text;
photos and exports carry EXIF, XMP and PNG text fields that sometimes hold a name, an ID or a
birth date. The findings are field kinds ("patient name", "EXIF text") so that a notice, a log
line or a test can name them without ever repeating what they hold.
"""

from __future__ import annotations

import io
import re

from PIL import Image

from bot.core.dicom import is_dicom

# DICOM keyword -> the kind of field it is, as the notice names it.
DICOM_FIELDS = {
    "PatientName": "patient name",
    "OtherPatientNames": "patient name",
    "PatientBirthName": "patient name",
    "PatientMotherBirthName": "patient name",
    "PatientID": "patient ID",
    "OtherPatientIDs": "patient ID",
    "OtherPatientIDsSequence": "patient ID",
    "IssuerOfPatientID": "patient ID",
    "MedicalRecordLocator": "patient ID",
    "PatientBirthDate": "birth date",
    "PatientBirthTime": "birth date",
    "PatientAge": "age",
    "PatientAddress": "address",
    "PatientTelephoneNumbers": "phone number",
    "PatientTelecomInformation": "phone number",
    "AccessionNumber": "accession number",
    "StudyID": "study ID",
    "InstitutionName": "institution",
    "InstitutionAddress": "institution",
    "InstitutionalDepartmentName": "institution",
    "ReferringPhysicianName": "clinician name",
    "PerformingPhysicianName": "clinician name",
    "NameOfPhysiciansReadingStudy": "clinician name",
    "OperatorsName": "clinician name",
    "RequestingPhysician": "clinician name",
    "StudyDate": "exam date",
    "SeriesDate": "exam date",
    "AcquisitionDate": "exam date",
    "ContentDate": "exam date",
    "AcquisitionDateTime": "exam date",
    "PatientComments": "free-text comments",
    "ImageComments": "free-text comments",
    "AdditionalPatientHistory": "free-text comments",
}
BURNED_IN = "burned-in annotation"

# EXIF tags that hold free text (0th IFD and Exif IFD), by the name the notice gives.
EXIF_TEXT_TAGS = {
    0x010D: "DocumentName",
    0x010E: "ImageDescription",
    0x013B: "Artist",
    0x8298: "Copyright",
    0x9286: "UserComment",
    0x9C9B: "XPTitle",
    0x9C9C: "XPComment",
    0x9C9D: "XPAuthor",
    0x9C9F: "XPSubject",
    0xA430: "CameraOwnerName",
}
EXIF_IFD = 0x8769
GPS_IFD = 0x8825

# Free text "looks like" an identifier when it holds a long number (an MRN, a phone number), a
# date, a word such as "patient" or "DOB", or two capitalised words (a name).
_IDENTIFIER = re.compile(
    r"\d{5,}"
    r"|\b\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}\b"
    r"|\b(patient|name|dob|mrn|born|birth|id|nhs|ssn|accession)\b",
    re.IGNORECASE,
)
_NAME = re.compile(r"\b[A-Z][a-z]+[ ,^]+[A-Z][a-z]+\b|\b[A-Z]{2,}\^[A-Z]{2,}\b")
# Text chunks that tools write about the file, not the person: ImageMagick's date:create and
# date:modify, Software, a signature. (ImageMagick's hex-encoded "Raw profile type exif" is not
# decoded here: a known gap.)
_TECHNICAL_KEY = re.compile(
    r"^(software|date:\w+|creation time|signature|raw profile type \w+|xml:com\.adobe\.xmp)$",
    re.IGNORECASE,
)
_XMP_VALUE = re.compile(r"""\s([\w:]+)=["']([^"']*)["']""")
_XMP_TAG = re.compile(r"<[^>]+>")


def find_phi(data: bytes) -> list[str]:
    """The kinds of identifying field in a file, sorted; [] when none (or unreadable)."""
    try:
        kinds = _dicom_fields(data) if is_dicom(data) else _image_fields(data)
    except Exception:  # never let the check itself cost the user their verdict
        return []
    return sorted(set(kinds))


REMOVE_IT = "Please delete it from Slack, and post a de-identified copy instead"


def phi_notice(kinds: list[str]) -> str:
    """One line for the verdict's thread: the kinds of field found (never their values) and
    what to do about the file."""
    return (
        f"This file carries patient identifiers ({', '.join(kinds)}). {REMOVE_IT} "
        "(`cxr deidentify FILE --out DIR` makes one)."
    )


def looks_identifying(text: str) -> bool:
    return bool(_IDENTIFIER.search(text) or _NAME.search(text))


def _xmp_text(packet: str) -> str:
    """XMP's values, from attributes as well as elements, without namespaces and URLs."""
    values = [
        value
        for name, value in _XMP_VALUE.findall(packet)
        if not name.startswith(("xmlns", "rdf:", "x:xmptk")) and "://" not in value
    ]
    return " ".join([*values, _XMP_TAG.sub(" ", packet)])


def _dicom_fields(data: bytes) -> list[str]:
    from bot.core.dicom import read_dataset

    ds = read_dataset(data, pixels=False)
    replaced = (  # the file says it was de-identified: its names and IDs are stand-ins
        str(ds.get("PatientIdentityRemoved", "")).strip().upper() == "YES"
        or bool(ds.get("DeidentificationMethod"))
    )
    kinds = [
        kind
        for keyword, kind in DICOM_FIELDS.items()
        if not replaced and _filled(ds.get(keyword))  # de-identified: stand-in values
    ]
    if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
        kinds.append(BURNED_IN)
    if any(element.tag.is_private for element in ds):
        kinds.append("private tags")
    return kinds


def _filled(element) -> bool:
    if element is None:
        return False
    value = getattr(element, "value", element)
    return value not in (None, "", b"") and str(value).strip("^ \0") != ""


def _image_fields(data: bytes) -> list[str]:
    image = Image.open(io.BytesIO(data))  # headers only: pixels are never decoded here
    kinds: list[str] = []
    exif = image.getexif()
    for ifd in (exif, exif.get_ifd(EXIF_IFD)):
        for tag, name in EXIF_TEXT_TAGS.items():
            if tag in ifd and looks_identifying(_as_text(ifd[tag])):
                kinds.append(f"EXIF text ({name})")
    if exif.get_ifd(GPS_IFD):
        kinds.append("GPS location")
    for key, value in (getattr(image, "text", None) or {}).items():
        if _TECHNICAL_KEY.match(key):
            continue
        if looks_identifying(_as_text(value)) or _IDENTIFIER.search(key):
            kinds.append(f"{image.format} text ({key[:40]})")
    xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
    if xmp and looks_identifying(_xmp_text(_as_text(xmp))):
        kinds.append("XMP text")
    for key in ("comment", "Comment", "Description"):
        value = image.info.get(key)
        if value and looks_identifying(_as_text(value)):
            kinds.append(f"{image.format} text ({key})")
    return kinds


def _as_text(value: object) -> str:
    if isinstance(value, bytes):
        for encoding in ("utf-16-le", "utf-8") if value[1:2] == b"\0" else ("utf-8", "latin-1"):
            try:
                return value.decode(encoding).strip("\0 ")
            except UnicodeDecodeError:
                continue
        return ""
    return str(value)
