"""DICOM X-rays to 8-bit grey images, as a radiologist's viewer would first show them.

pydicom reads the file; the compressed transfer syntaxes come from pylibjpeg's plugins:
JPEG baseline, extended and lossless, and JPEG-LS (pylibjpeg-libjpeg), JPEG 2000 (pylibjpeg-
openjpeg); RLE lossless and the uncompressed syntaxes pydicom decodes itself. Anything else is
refused with a reply naming what to export instead.

The grey levels follow PS3.3 C.11: the modality LUT (rescale slope and intercept, or a LUT),
then the VOI LUT or the window the file carries, computed here straight to 0..255 (pydicom's
`apply_voi_lut` neither inverts nor scales to 8 bits). A file with neither gets a window over
the 0.5th to 99.5th percentile of its values, which ignores a few saturated pixels (markers,
collimator edges) the way an auto-window does. MONOCHROME1 (white is low) is inverted last.
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image

from bot.core.errors import CorruptImage, ImageOutOfLimits, UnsupportedFile, UserFacingError

MAGIC_OFFSET = 128
FALLBACK_PERCENTILES = (0.5, 99.5)
SUPPORTED_SYNTAXES = {
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian",
    "1.2.840.10008.1.2.5": "RLE Lossless",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline",
    "1.2.840.10008.1.2.4.51": "JPEG Extended",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS Near-lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
}
EXPORT_HINT = "Please export the X-ray as PNG or JPEG (or uncompressed DICOM) and post it again."


def is_dicom(data: bytes) -> bool:
    """DICOM Part 10 files: a 128-byte preamble, then `DICM`, whatever the file is called."""
    return data[MAGIC_OFFSET : MAGIC_OFFSET + 4] == b"DICM"


def quiet_pydicom() -> None:
    """pydicom reports a malformed value by quoting it, in a warning and in its log: a
    patient's name or birth date could reach the bot's logs that way. Values are not
    validated on reading, and what pydicom would say goes nowhere."""
    from pydicom import config

    config.settings.reading_validation_mode = config.IGNORE
    pydicom_log = logging.getLogger("pydicom")
    pydicom_log.propagate = False
    pydicom_log.handlers[:] = [logging.NullHandler()]
    pydicom_log.setLevel(logging.CRITICAL + 1)
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")


def read_dataset(data: bytes, *, pixels: bool = True):
    """The pydicom dataset, or `CorruptImage` for a file that isn't readable DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    quiet_pydicom()

    try:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=not pixels)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptImage(
            "I couldn't read this DICOM file: it seems damaged or truncated.",
            detail=type(exc).__name__,
        ) from None


def decode_dicom(data: bytes, *, max_pixels: int) -> Image.Image:
    """An 8-bit "L" (or, for colour files, "RGB") image of the file's single frame.

    Raises `UnsupportedFile`, `CorruptImage` or `ImageOutOfLimits` with a reply for the user.
    """
    try:
        return _decode(data, max_pixels)
    except UserFacingError:
        raise
    except Exception as exc:  # a malformed value deep in the file: pydicom raises anything
        raise CorruptImage(
            "I couldn't read this DICOM file: some of its values are malformed.",
            detail=type(exc).__name__,
        ) from None


def _decode(data: bytes, max_pixels: int) -> Image.Image:
    ds = read_dataset(data)
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise UnsupportedFile(
            "This DICOM file holds no image (it may be a report or a structured document). "
            + EXPORT_HINT
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise UnsupportedFile(
            f"This DICOM file holds {frames} frames (a series or a cine loop); I read single "
            "X-ray images. Please post one frame, exported as PNG or JPEG."
        )
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows * columns > max_pixels:
        raise ImageOutOfLimits(
            f"This image is {columns}×{rows} pixels, more than I can safely open. "
            "Please post a smaller export."
        )
    syntax = str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2"))
    if syntax not in SUPPORTED_SYNTAXES:
        raise UnsupportedFile(
            f"This DICOM file is compressed in a way I can't decode (transfer syntax {syntax}). "
            + EXPORT_HINT
        )
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # the decoders raise many types on bad data
        raise CorruptImage(
            "I couldn't decode this DICOM file's image: the pixel data seems damaged.",
            detail=type(exc).__name__,
        ) from None
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        return Image.fromarray(to_display(pixels, ds, photometric), mode="L")
    if pixels.ndim == 3 and pixels.shape[-1] == 3 and pixels.dtype == np.uint8:
        return Image.fromarray(pixels, mode="RGB")  # pydicom gives RGB for YBR too
    raise UnsupportedFile(
        f"I can't read DICOM images stored as {photometric} at {ds.get('BitsStored')} bits. "
        + EXPORT_HINT
    )


def to_display(pixels: np.ndarray, ds, photometric: str = "MONOCHROME2") -> np.ndarray:
    """Stored values to 8-bit display values: modality LUT, VOI, then MONOCHROME1 inverted."""
    from pydicom.pixels import apply_modality_lut

    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32)  # exact to 2**24
    grey = _voi(values, ds)
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return grey


def _voi(values: np.ndarray, ds) -> np.ndarray:
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        return _voi_lut(values, ds.VOILUTSequence[0])
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
        return window(values, center, width, function)
    low, high = (float(v) for v in np.percentile(values, FALLBACK_PERCENTILES))
    if high <= low:
        high = low + 1
    return window(values, (low + high) / 2, high - low, "LINEAR_EXACT")


def window(values: np.ndarray, center: float, width: float, function: str = "LINEAR"):
    """PS3.3 C.11.2.1.2 windows, straight to 0..255 (uint8)."""
    if function == "SIGMOID":
        out = 255.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    elif function == "LINEAR_EXACT":
        out = ((values - center) / width + 0.5) * 255.0
    else:  # LINEAR; a width below 1 is not allowed for it
        width = max(width, 1.0)
        out = ((values - (center - 0.5)) / max(width - 1.0, 1e-9) + 0.5) * 255.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _voi_lut(values: np.ndarray, item) -> np.ndarray:
    """A VOI LUT: entries, first mapped value and bits from its descriptor (C.11.2.1.1)."""
    entries, first, bits = (int(v) for v in item.LUTDescriptor)
    entries = entries or 65536
    raw = item.LUTData
    lut = np.asarray(raw if not isinstance(raw, bytes) else np.frombuffer(raw, "<u2"), float)
    lut = lut[:entries] if lut.size >= entries else np.pad(lut, (0, entries - lut.size), "edge")
    index = np.clip(np.rint(values) - first, 0, entries - 1).astype(np.int64)
    top = float(2**bits - 1) if bits else float(lut.max() or 1)
    return np.clip(np.rint(lut[index] * 255.0 / top), 0, 255).astype(np.uint8)


def _first(value) -> float | None:
    """Window values may be multi-valued (several presets): the first one is the default."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        value = value[0] if len(value) else None
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
