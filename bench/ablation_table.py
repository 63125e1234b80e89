"""The ablation table: each training run's figures on both validation splits, as Markdown.

    .venv/bin/python bench/ablation_table.py [RUNS ...]

RUNS are folders with a model_card.json (default: every runs/ablation/*/ and bot/model/). For
each: the means switched on, epochs, then accuracy, sensitivity, specificity and ROC AUC at the
network's own boundary (raw logit >= 0, before calibration) on the patient-level split and on
the harder one (atypical acquisition), and the AUC with test-time zooms (TTA). Every run holds
out the same patients, so the rows compare.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def means(config: dict) -> str:
    found = []
    if config.get("equalize"):
        found.append("equalise")
    if config.get("augmentation") == "strong":
        found.append("strong aug")
    if config.get("label_smoothing"):
        found.append(f"smooth {config['label_smoothing']}")
    if config.get("tta"):
        found.append("TTA")
    return " + ".join(found) or "none (v1 recipe)"


def row(card: dict) -> str:
    config = card["training"]["config"]
    ablation = card["metrics"].get("ablation", {})
    cells = [
        card["training"]["config"].get("extra", {}).get("ablation", card["version"]),
        means(config),
        f"{card['training']['epochs']} of {card['training'].get('schedule_epochs', card['training']['epochs'])}",
    ]
    for split in ("validation", "atypical"):
        m = ablation.get(split, {}).get("as_is")
        tta = ablation.get(split, {}).get("tta")
        if m is None:
            cells += ["-"] * 5
            continue
        cells += [
            f"{m['accuracy']:.3f}",
            f"{m['sensitivity']:.3f}",
            f"{m['specificity']:.3f}",
            f"{m['auc']:.4f}",
            f"{tta['auc']:.4f}" if tta else "-",
        ]
    minutes = card["training"]["seconds"] / 60
    return "| " + " | ".join([*cells, f"{minutes:.0f}"]) + " |"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    folders = [Path(a) for a in args] or sorted(Path("runs/ablation").glob("*/"))
    print(
        "| run | means | epochs | val acc | val sens | val spec | val AUC | val AUC TTA | "
        "harder acc | harder sens | harder spec | harder AUC | harder AUC TTA | min |"
    )
    print("|" + "---|" * 14)
    for folder in folders:
        path = folder / "model_card.json"
        if path.is_file():
            print(row(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
