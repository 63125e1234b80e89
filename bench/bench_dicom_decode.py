"""DICOM decoding against JPEG decoding, on the same real X-rays, one thread.

    .venv/bin/python bench/bench_dicom_decode.py [FOLDER] [--limit N] [--side PX]

Each JPEG of FOLDER (default ../shared/data/originals, searched recursively) is also turned,
in memory, into a 12-bit DICOM (its grey levels spread over 12 bits, with a window), both
uncompressed and JPEG 2000 lossless. Then `bot.core.imaging.decode` is timed on each form at
the local model's side (384 px), from bytes in memory: the floor of the bot's per-image cost.
Prints the median per form and its ratio to the JPEG's.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from PIL import Image


def to_dicom(image: Image.Image, compress: bool) -> bytes:
    """The film as a 12-bit DICOM with a window, as the tests make them (no patient fields)."""
    from pydicom.uid import JPEG2000Lossless

    from tests.synthetic_dicom import dicom_dataset, to_bytes

    values = (np.asarray(image.convert("L"), dtype=np.uint16) * 16).astype(np.uint16)
    ds = dicom_dataset(values, patient=False, WindowCenter=2048, WindowWidth=4096)
    if compress:
        ds.compress(JPEG2000Lossless, values)
    return to_bytes(ds)


def timed(data: bytes, side: int, repeat: int) -> float:
    from bot.core.imaging import decode

    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        decode(data, max_side=side, max_pixels=60_000_000)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=Path("../shared/data/originals"))
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--side", type=int, default=384)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    files = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg"))
    files = files[:: max(1, len(files) // args.limit)][: args.limit]
    if not files:
        sys.exit(f"no JPEGs under {args.folder}")
    times: dict[str, list[float]] = {"JPEG": [], "DICOM 12-bit": [], "DICOM JPEG 2000": []}
    pixels = []
    for path in files:
        data = path.read_bytes()
        image = Image.open(io.BytesIO(data))
        pixels.append(image.size[0] * image.size[1] / 1e6)
        forms = {
            "JPEG": data,
            "DICOM 12-bit": to_dicom(image, compress=False),
            "DICOM JPEG 2000": to_dicom(image, compress=True),
        }
        for name, payload in forms.items():
            times[name].append(timed(payload, args.side, args.repeat))
    print(
        f"{len(files)} X-rays from {args.folder} ({min(pixels):.1f}-{max(pixels):.1f} MP, "
        f"median {statistics.median(pixels):.1f} MP), decoded to {args.side} px"
    )
    base = statistics.median(times["JPEG"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:16s} median {median:7.1f} ms   ratio to JPEG {median / base:5.2f}")


if __name__ == "__main__":
    main()
