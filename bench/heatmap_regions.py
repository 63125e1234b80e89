"""Where do the local model's heatmaps light up? Share of the drawn evidence per film region.

    .venv/bin/python bench/heatmap_regions.py [DATA] [--model PATH]

DATA (default ../shared/data/train224) is split as the model's card says it was trained; the
validation films (never trained on) that the model calls Pneumonia are run through the model, and each
one's drawn evidence (the CAM above the decision point, as `bot.ml.heatmap` draws it) is summed
per region of the 14 x 14 map. Regions are fixed boxes, not a segmentation: `lungs` (two
boxes where the lung fields sit on a centred AP film), `mediastinum` (the column between
them), `top` (the two top rows: neck, shoulders, clavicles), `bottom` (the two bottom rows:
abdomen), `sides` (the two outer columns each side: arms, side markers) and `corners` (3 x 3
cells at each corner, where the side marker and labels usually are). Prints the mean share per
region and the share of films whose strongest cell is outside the lung boxes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def regions(n: int = 14) -> dict[str, np.ndarray]:
    masks = {name: np.zeros((n, n), bool) for name in ("lungs", "mediastinum", "top", "bottom")}
    masks["lungs"][3:12, 2:6] = True
    masks["lungs"][3:12, 8:12] = True
    masks["mediastinum"][3:12, 6:8] = True
    masks["top"][:2] = True
    masks["bottom"][12:] = True
    masks["sides"] = np.zeros((n, n), bool)
    masks["sides"][:, :2] = masks["sides"][:, 12:] = True
    masks["corners"] = np.zeros((n, n), bool)
    for rows in (slice(0, 3), slice(11, 14)):
        for cols in (slice(0, 3), slice(11, 14)):
            masks["corners"][rows, cols] = True
    return masks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=Path("../shared/data/train224"))
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args(argv)

    from bot.adapters.onnx_classifier import OnnxClassifier
    from bot.core.imaging import decode
    from bot.training.data import list_samples, split_by_patient, three_way_split

    classifier = OnnxClassifier(args.model, heatmaps=False, threads=2)
    offset = classifier.card.threshold_logit
    samples = list_samples(args.data)
    config = classifier.card.raw.get("training", {}).get("config", {})
    if config.get("split", "patient") == "three-way":
        _, val, atypical = three_way_split(samples)
    else:  # trained on the patient-level split only: its own validation patients
        _, val = split_by_patient(samples, config.get("val_fraction", 0.15), config.get("seed", 0))
        atypical = []
    masks = regions()
    shares: dict[str, list[float]] = {name: [] for name in masks}
    peak_outside = []
    for sample in val + atypical:
        image = decode(sample.path.read_bytes(), max_side=384, max_pixels=10**8)
        out = classifier.outputs(image)
        if float(classifier.probability(out["logit"])[0]) < 0.5:
            continue
        evidence = np.maximum(out["cam"][0] - offset, 0.0)
        total = float(evidence.sum())
        if total <= 0:
            continue
        for name, mask in masks.items():
            shares[name].append(float(evidence[mask].sum()) / total)
        peak = np.unravel_index(int(np.argmax(evidence)), evidence.shape)
        peak_outside.append(not masks["lungs"][peak])
    n = len(peak_outside)
    print(
        f"{classifier.card.name} {classifier.card.version}: {n} validation films called Pneumonia"
    )
    for name, values in shares.items():
        area = masks[name].mean()
        print(f"  {name:12s} {np.mean(values):6.1%} of the evidence ({area:5.1%} of the map)")
    print(f"  strongest cell outside the lung boxes: {np.mean(peak_outside):.1%} of films")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
