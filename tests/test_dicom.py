"""DICOM X-rays: grey levels as PS3.3 C.11 defines them, refusals with reasons, and the same
pixels for the classifier as the 8-bit PNG made from the file."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, RLELossless

from bot.core.errors import CorruptImage, ImageOutOfLimits, UnsupportedFile
from bot.core.imaging import decode, encode_for_rekognition, sniff_kind
from tests.synthetic import png_bytes
from tests.synthetic_dicom import PLANTED, dicom_bytes, dicom_dataset, to_bytes, xray_values

BIG = 60_000_000


def pixels_of(data: bytes, max_side: int = 4096) -> np.ndarray:
    return np.asarray(decode(data, max_side=max_side, max_pixels=BIG))


def linear_window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, written out as the standard states it, to 0..255."""
    low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    y = ((x - (center - 0.5)) / (width - 1) + 0.5) * 255
    y = np.where(x <= low, 0, np.where(x > high, 255, y))
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def test_recognised_by_content_whatever_the_name():
    data = dicom_bytes()
    assert sniff_kind(data) == "DICOM"
    assert sniff_kind(b"\0" * 128 + b"DICX" + data[132:]) is None


def test_a_window_gives_the_grey_levels_the_standard_defines():
    values = xray_values(bits=12)
    data = dicom_bytes(values, WindowCenter=2000, WindowWidth=3000)
    assert np.array_equal(pixels_of(data), linear_window(values.astype(float), 2000, 3000))


def test_the_modality_lut_comes_before_the_window():
    values = xray_values(bits=12)
    data = dicom_bytes(
        values, RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=3000, WindowWidth=6000
    )
    expected = linear_window(values.astype(float) * 2 - 1024, 3000, 6000)
    assert np.array_equal(pixels_of(data), expected)


def test_the_first_of_several_window_presets_is_used():
    values = xray_values(bits=12)
    data = dicom_bytes(values, WindowCenter=[2000, 500], WindowWidth=[3000, 200])
    assert np.array_equal(pixels_of(data), linear_window(values.astype(float), 2000, 3000))


def test_a_voi_lut_is_applied_and_scaled_to_8_bits():
    values = xray_values(bits=12)
    lut = (np.sqrt(np.arange(4096) / 4095.0) * 65535).astype(np.uint16)  # a gamma curve
    ds = dicom_dataset(values, WindowCenter=10, WindowWidth=5)  # the LUT wins over the window
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = lut.astype("<u2").tobytes()
    ds.VOILUTSequence = [item]
    expected = np.rint(lut[values].astype(float) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(pixels_of(to_bytes(ds)), expected)


def test_without_a_window_or_lut_the_documented_fallback_spans_the_values():
    values = xray_values(bits=16)
    got = pixels_of(dicom_bytes(values, bits_stored=16))
    low, high = np.percentile(values.astype(float), (0.5, 99.5))
    expected = np.clip(np.rint((values - low) / (high - low) * 255), 0, 255).astype(np.uint8)
    assert np.array_equal(got, expected)
    assert got.min() == 0 and got.max() == 255


def test_monochrome1_is_inverted():
    values = xray_values(bits=12)
    window = {"WindowCenter": 2000, "WindowWidth": 3000}
    normal = pixels_of(dicom_bytes(values, **window))
    inverted = pixels_of(dicom_bytes(values, photometric="MONOCHROME1", **window))
    assert np.array_equal(inverted, 255 - normal)


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_8_12_and_16_bit_files_decode_to_8_bit_grey(bits):
    image = decode(
        dicom_bytes(xray_values(bits=bits), bits_stored=bits), max_side=224, max_pixels=BIG
    )
    assert image.mode == "L" and max(image.size) == 224
    assert np.ptp(np.asarray(image)) > 200  # the full grey range, not a flat image


@pytest.mark.parametrize(
    ("syntax", "name"), [(RLELossless, "RLE"), (JPEG2000Lossless, "JPEG 2000")]
)
def test_compressed_files_decode_to_the_same_pixels(syntax, name):
    values = xray_values(bits=12)
    plain = dicom_dataset(values, WindowCenter=2000, WindowWidth=3000)
    packed = dicom_dataset(values, WindowCenter=2000, WindowWidth=3000)
    packed.compress(syntax, values)
    assert str(packed.file_meta.TransferSyntaxUID) == syntax, name
    assert np.array_equal(pixels_of(to_bytes(packed)), pixels_of(to_bytes(plain)))


def test_an_unsupported_compression_is_refused_with_what_to_do():
    ds = dicom_dataset(xray_values())
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG-2
    ds.PixelData = encapsulate([bytes(ds.PixelData)])
    with pytest.raises(UnsupportedFile) as error:
        decode(to_bytes(ds), max_side=224, max_pixels=BIG)
    assert "compressed in a way I can't decode" in error.value.reply
    assert "PNG or JPEG" in error.value.reply


def test_multi_frame_files_are_refused_with_a_reason():
    with pytest.raises(UnsupportedFile) as error:
        decode(dicom_bytes(xray_values(size=(96, 96)), frames=3), max_side=224, max_pixels=BIG)
    assert "3 frames" in error.value.reply


def test_the_pixel_cap_applies_before_the_pixels_are_decoded():
    data = dicom_bytes(xray_values(size=(1000, 1200)))
    with pytest.raises(ImageOutOfLimits) as error:
        decode(data, max_side=224, max_pixels=1_000_000)
    assert "1000×1200" in error.value.reply


def test_a_tiny_image_is_refused_as_other_images_are():
    with pytest.raises(ImageOutOfLimits):
        decode(dicom_bytes(xray_values(size=(40, 40))), max_side=224, max_pixels=BIG)


@pytest.mark.parametrize("cut", [200, 1000, -5000])
def test_a_corrupt_or_truncated_file_gets_a_kind_reply(cut):
    data = dicom_bytes(xray_values())
    with pytest.raises((CorruptImage, UnsupportedFile)) as error:
        decode(data[:cut], max_side=224, max_pixels=BIG)
    assert "DICOM" in error.value.reply


def test_a_dicom_without_pixels_is_refused():
    ds = dicom_dataset(xray_values())
    del ds.PixelData
    with pytest.raises(UnsupportedFile) as error:
        decode(to_bytes(ds), max_side=224, max_pixels=BIG)
    assert "holds no image" in error.value.reply


def test_the_same_pixels_as_the_8_bit_png_made_from_the_file():
    """What a careful user would export: modality LUT, VOI, inversion, then 8-bit PNG."""
    values = xray_values(bits=12)
    data = dicom_bytes(
        values,
        photometric="MONOCHROME1",
        RescaleSlope=0.5,
        RescaleIntercept=100,
        WindowCenter=1100,
        WindowWidth=1800,
    )
    grey = 255 - linear_window(values * 0.5 + 100, 1100, 1800)
    png = png_bytes(Image.fromarray(grey, mode="L"))
    for side in (224, 384, 4096):
        assert np.array_equal(pixels_of(data, side), pixels_of(png, side))


def test_rekognition_gets_a_jpeg_without_tags_or_metadata():
    data = dicom_bytes(xray_values(), WindowCenter=2000, WindowWidth=3000)
    sent = encode_for_rekognition(decode(data, max_side=4096, max_pixels=BIG))
    assert sent[:2] == b"\xff\xd8"
    assert Image.open(io.BytesIO(sent)).format == "JPEG"
    assert b"DICM" not in sent and b"Exif" not in sent
    for value in PLANTED:
        assert value.encode() not in sent


class Recorder:
    """A local classifier that keeps the images the bot hands it."""

    max_side = 384

    def __init__(self) -> None:
        from bot.core.labels import ModelInfo

        self.images: list[np.ndarray] = []
        self.model = ModelInfo("local", "recorder", "v0")

    async def classify(self, image):
        from bot.core.labels import Label, Prediction

        self.images.append(np.asarray(image).copy())
        return Prediction({Label.NORMAL: 0.9, Label.PNEUMONIA: 0.1}, self.model)


async def test_the_classifier_port_sees_the_same_pixels_for_dicom_and_its_png(slack, tmp_path):
    from tests.harness import BotHarness

    values = xray_values(bits=12, size=(400, 480))
    data = dicom_bytes(
        values,
        photometric="MONOCHROME1",
        RescaleSlope=2,
        RescaleIntercept=-500,
        WindowCenter=3000,
        WindowWidth=7000,
    )
    grey = 255 - linear_window(values * 2.0 - 500, 3000, 7000)
    recorder = Recorder()
    harness = await BotHarness(slack, tmp_path / "cxr.db", local=recorder).start()
    try:
        await harness.share(
            "C0XRAYS01",
            [("chest.dcm", data), ("chest.png", png_bytes(Image.fromarray(grey, mode="L")))],
        )
        await harness.drain()
    finally:
        await harness.stop()
    dicom_seen, png_seen = recorder.images
    assert dicom_seen.shape == (384, 320)  # at the classifier's max_side
    assert np.array_equal(dicom_seen, png_seen)


def test_damaged_files_only_ever_get_kind_replies():
    """Bytes flipped anywhere in a file (tags, lengths, values, pixels): a reply or a picture,
    never an exception the user would see as 'something went wrong'."""
    from bot.core.errors import UserFacingError

    data = bytearray(dicom_bytes(xray_values(size=(96, 96)), WindowCenter=2000, WindowWidth=3000))
    rng = np.random.default_rng(0)
    for _ in range(300):
        damaged = bytearray(data)
        for position in rng.integers(132, 1200, size=3):  # the tags, not just the pixels
            damaged[position] = int(rng.integers(0, 256))
        with contextlib.suppress(UserFacingError):
            decode(bytes(damaged), max_side=224, max_pixels=BIG)


def test_a_jpeg_baseline_dicom_decodes_like_the_jpeg_inside_it():
    """JPEG baseline (8-bit, lossy), as CR exports often are: pylibjpeg-libjpeg decodes it."""
    grey = Image.fromarray(xray_values(6, bits=8), mode="L")
    buffer = io.BytesIO()
    grey.save(buffer, format="JPEG", quality=90)
    ds = dicom_dataset(xray_values(6, bits=8), bits_stored=8, WindowCenter=127.5, WindowWidth=256)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].is_undefined_length = True
    got = pixels_of(to_bytes(ds)).astype(int)
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue()))).astype(int)
    assert np.abs(got - expected).max() <= 2  # two JPEG decoders: rounding may differ by one
