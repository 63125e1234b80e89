"""Speed and memory of the local model on real uploads, one thread.

    .venv/bin/python bench/bench_local_model.py [FOLDER] [--model PATH] [--repeat N]

FOLDER (default ../shared/data/originals) is searched recursively for images. For each, the
bot's own steps are timed separately: decode (`bot.core.imaging.decode` at the classifier's
`max_side`, from bytes already in memory; 1024 px when heatmaps are on), the guard (`--guard
learned`, the default: the heuristic checks, preprocess and one model run, whose outputs the
classifier reuses; `--guard heuristic`: the checks alone), the classifier (preprocess and
inference when the guard did not run the model; calibration), and the heatmap (PNG with its
legend, optional in the bot). "total" is decode + guard + classify, the figure the speed goal
is about; it is reported for all files and for the large originals (>= 1.8 MP). Also: model
load time and the process's resident memory (RSS) with the model loaded and after the run.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stats(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(values) * 1e3:6.2f} ms   p95 {p95 * 1e3:6.2f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=Path("../shared/data/originals"))
    parser.add_argument("--model", type=Path, default=None, help="ONNX file (default: bundled)")
    parser.add_argument("--repeat", type=int, default=3, help="passes over the folder")
    parser.add_argument("--guard", choices=("learned", "heuristic"), default="learned")
    parser.add_argument("--no-heatmaps", action="store_true", help="decode at 384 px")
    args = parser.parse_args(argv)

    files = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in SUFFIXES)
    if not files:
        print(f"no images in {args.folder}", file=sys.stderr)
        return 1
    blobs = [p.read_bytes() for p in files]
    rss_start = rss_mb()

    start = time.perf_counter()
    from bot.adapters.onnx_classifier import OnnxClassifier

    imported = time.perf_counter() - start
    start = time.perf_counter()
    classifier = OnnxClassifier(args.model, heatmaps=not args.no_heatmaps, threads=1)
    if args.guard == "learned":
        from bot.ml.film_guard import FilmGuard

        guard = FilmGuard(args.model, threads=1)
    else:
        from bot.core.xray_guard import check_chest_xray as guard
    loaded = time.perf_counter() - start
    rss_loaded = rss_mb()

    from bot.core.errors import NotAChestXray
    from bot.core.imaging import decode
    from bot.core.labels import Label
    from bot.ml.heatmap import heatmap_png

    timings: dict[str, list[float]] = {k: [] for k in ("decode", "guard", "classify")}
    timings |= {"heatmap": [], "total": [], "total >= 1.8 MP": []}
    megapixels = []
    refused = 0
    for data in blobs[:3]:  # warm-up
        classifier.predict(decode(data, max_side=classifier.max_side, max_pixels=10**8))
    for _ in range(args.repeat):
        for path, data in zip(files, blobs, strict=True):
            t0 = time.perf_counter()
            image = decode(data, max_side=classifier.max_side, max_pixels=60_000_000)
            t1 = time.perf_counter()
            try:
                guard(image)
            except NotAChestXray:
                refused += 1
            t2 = time.perf_counter()
            prediction = classifier.predict(image, heatmap=False)
            t3 = time.perf_counter()
            p = prediction.scores[Label.PNEUMONIA]
            cam = classifier.outputs(image)["cam"][0]
            t4 = time.perf_counter()
            heatmap_png(image, cam, p_class=max(p, 0.5), offset=classifier.card.threshold_logit)
            t5 = time.perf_counter()
            for key, value in (
                ("decode", t1 - t0),
                ("guard", t2 - t1),
                ("classify", t3 - t2),
                ("heatmap", t5 - t4),
                ("total", t3 - t0),
            ):
                timings[key].append(value)
            if len(megapixels) < len(files):
                from PIL import Image

                with Image.open(path) as original:
                    megapixels.append(original.width * original.height / 1e6)
            if megapixels[files.index(path)] >= 1.8:
                timings["total >= 1.8 MP"].append(t3 - t0)

    large = sum(mp >= 1.8 for mp in megapixels)
    print(
        f"{args.folder}: {len(files)} images ({large} of >= 1.8 MP; median "
        f"{statistics.median(megapixels):.2f} MP, max {max(megapixels):.2f} MP), "
        f"{args.repeat} passes, one thread, max_side {classifier.max_side}, {args.guard} guard "
        f"(refused {refused} of {len(files) * args.repeat})"
    )
    print(f"model {classifier.path} ({classifier.path.stat().st_size / 1e6:.2f} MB)")
    for key, values in timings.items():
        if values:
            print(f"  {key:16s} {stats(values)}")
    print(
        f"  import onnxruntime + adapter {imported * 1e3:.0f} ms; model load {loaded * 1e3:.0f} ms"
    )
    print(
        f"  RSS: {rss_start:.0f} MB before the model (holding {sum(map(len, blobs)) / 1e6:.0f} "
        f"MB of files), {rss_loaded:.0f} MB with it loaded, {rss_mb():.0f} MB after the run"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
