"""How many real chest X-rays does the not-an-X-ray guard accept, and how much else does it
refuse?

    .venv/bin/python bench/check_guard.py [FOLDER ...] [--guard learned|heuristic]
        [--negatives]

Each folder (default ../shared/data/originals and ../shared/data/train224) is searched
recursively for images; each is decoded the way the bot decodes uploads (at the local model's
`max_side`, 1024 px with heatmaps on) and passed to the guard: `learned` (the default,
`bot.ml.film_guard.FilmGuard`: the heuristic checks, then the model's view) or `heuristic`
(`bot.core.xray_guard.check_chest_xray`). Prints the acceptance per folder, every rejected file
with its reason, the range of each heuristic measurement, and the guard's time per image.
`--negatives` (needs the train extra) also runs the held-out negative set of
`bot.training.negatives` (photos from sources never fitted, textures and documents from other
seeds) and inverted / rotated copies of the first folder's films, and prints the refusal share
per kind.
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
from bot.ml.heatmap import MAX_SIDE

SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
DEFAULTS = [Path("../shared/data/originals"), Path("../shared/data/train224")]


def check_folder(folder: Path, guard=check_chest_xray) -> tuple[int, int]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES)
    rejected, timings, seen = 0, [], {}
    for path in files:
        image = decode(path.read_bytes(), max_side=MAX_SIDE, max_pixels=60_000_000)
        for key, value in measure(image).items():
            low, high = seen.get(key, (value, value))
            seen[key] = (min(low, value), max(high, value))
        start = time.perf_counter()
        try:
            guard(image)
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
    parser.add_argument("--guard", choices=("learned", "heuristic"), default="learned")
    parser.add_argument("--negatives", action="store_true")
    args = parser.parse_args(argv)
    guard = check_chest_xray
    if args.guard == "learned":
        from bot.ml.film_guard import FilmGuard

        guard = FilmGuard(threads=1)
    for folder in args.folders:
        check_folder(folder, guard)
    if args.negatives:
        check_negatives(guard, args.folders[0] if args.folders else DEFAULTS[0])
    return 0


def refused(guard, image) -> bool:
    try:
        guard(image)
    except NotAChestXray:
        return True
    return False


def check_negatives(guard, films: Path) -> None:
    from bot.training import negatives

    held_out = negatives.photos(True, 20) + negatives.synthetic(True, 150)
    by_kind: dict[str, list[bool]] = {}
    for item in held_out:
        by_kind.setdefault(item.kind, []).append(refused(guard, item.image))
    for path in sorted(p for p in films.rglob("*") if p.suffix.lower() in SUFFIXES):
        image = decode(path.read_bytes(), max_side=MAX_SIDE, max_pixels=60_000_000)
        for _, name, transformed in negatives.film_transforms(image):
            by_kind.setdefault(f"film {name}", []).append(refused(guard, transformed))
    print("held-out negatives and transformed films, refused:")
    for kind, values in by_kind.items():
        print(f"  {kind:28s} {sum(values):4d}/{len(values):4d} ({sum(values) / len(values):.1%})")


if __name__ == "__main__":
    raise SystemExit(main())
