"""Synthetic DICOM files made with pydicom: a chest X-ray's pixels at 8, 12 or 16 bits, with
the tags a PACS export carries (or not). Planted patient values are fixed strings, so tests can
look for them anywhere they must not appear."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from tests.synthetic import chest_xray

PATIENT = {
    "PatientName": "DOE^JANE^Q",
    "PatientID": "MRN-4815162342",
    "PatientBirthDate": "19710203",
    "AccessionNumber": "ACC90817263",
    "InstitutionName": "St Elsewhere General Hospital",
    "ReferringPhysicianName": "HOUSE^GREGORY",
    "StudyDate": "20240611",
}
PLANTED = [
    "DOE^JANE",
    "Jane",
    "4815162342",
    "19710203",
    "ACC90817263",
    "Elsewhere",
    "HOUSE^GREGORY",
    "20240611",
]


def xray_values(seed: int = 0, size: tuple[int, int] = (320, 384), bits: int = 12) -> np.ndarray:
    """A synthetic chest X-ray as stored values spanning `bits` bits (uint16, or uint8)."""
    grey = np.asarray(chest_xray(seed, size=size), dtype=np.float64)
    top = 2**bits - 1
    values = np.rint(grey / 255.0 * top * 0.9 + top * 0.05)
    return values.astype(np.uint8 if bits <= 8 else np.uint16)


def dicom_dataset(
    pixels: np.ndarray,
    *,
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    patient: bool = True,
    frames: int = 1,
    **tags: Any,
) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = tags.pop("StudyInstanceUID", generate_uid())
    ds.SeriesInstanceUID = tags.pop("SeriesInstanceUID", generate_uid())
    ds.Modality = "CR"
    if patient:
        for keyword, value in PATIENT.items():
            setattr(ds, keyword, value)
    rows, columns = pixels.shape[-2:]
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if pixels.dtype == np.uint8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
        pixels = np.stack([pixels] * frames)
    ds.PixelData = pixels.tobytes()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    return ds


def dicom_bytes(pixels: np.ndarray | None = None, *, preamble: bool = True, **kwargs: Any) -> bytes:
    """A DICOM Part 10 file (128-byte preamble, `DICM`) as bytes."""
    ds = dicom_dataset(xray_values() if pixels is None else pixels, **kwargs)
    return to_bytes(ds, preamble=preamble)


def to_bytes(ds: Dataset, *, preamble: bool = True) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=preamble)
    return buffer.getvalue()
