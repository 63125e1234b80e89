"""How many real chest X-rays does the not-an-X-ray guard accept? (It should be all of them.)

    .venv/bin/python bench/check_guard.py [FOLDER ...]

Each folder (default ../shared/data/originals and ../shared/data/train224) is searched
recursively for images; each is decoded the way the bot decodes uploads (at the local model's
`max_side`) and passed to `bot.core.xray_guard.check_chest_xray`. Prints the acceptance per
folder, every rejected file with its reason, the range of each measurement, and the guard's
time per image.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.core.errors import NotAChestXray
from bot.core.imaging import decode
from bot.core.xray_guard import check_chest_xray, measure
from bot.ml.preprocess import MAX_SIDE

SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
DEFAULTS = [Path("../shared/data/originals"), Path("../shared/data/train224")]


def check_folder(folder: Path) -> tuple[int, int]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES)
    rejected, timings, seen = 0, [], {}
    for path in files:
        image = decode(path.read_bytes(), max_side=MAX_SIDE, max_pixels=60_000_000)
        for key, value in measure(image).items():
            low, high = seen.get(key, (value, value))
            seen[key] = (min(low, value), max(high, value))
        start = time.perf_counter()
        try:
            check_chest_xray(image)
        except NotAChestXray as exc:
            rejected += 1
            print(f"  rejected {path}: {exc.reply} [{exc.detail}]")
        timings.append(time.perf_counter() - start)
    accepted = len(files) - rejected
    share = accepted / len(files) if files else 0.0
    print(f"{folder}: accepted {accepted}/{len(files)} ({share:.2%})")
    for key, (low, high) in seen.items():
        print(f"  {key:7s} {low:8.3f} .. {high:8.3f}")
    if timings:
        print(f"  guard time per image: median {statistics.median(timings) * 1e3:.2f} ms")
    return accepted, len(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, default=DEFAULTS)
    args = parser.parse_args(argv)
    for folder in args.folders:
        check_folder(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
