"""The ablation table: each training run's figures on both validation splits, as Markdown.

    .venv/bin/python bench/ablation_table.py [RUNS ...]

RUNS are folders with a model_card.json (default: every runs/ablation/*/). For each: the means
switched on, epochs, then accuracy, sensitivity, specificity and ROC AUC of the weight average
after its last epoch, at the network's own boundary (raw logit >= 0), on the patient-level
split and on the harder one (atypical acquisition); then the AUC after BatchNorm's statistics
are re-estimated on clean images (what gets exported), without and with test-time zooms (TTA).
Every run holds out the same patients, so the rows compare.
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


def _cells(m: dict | None) -> list[str]:
    if not m:
        return ["-"] * 4
    return [
        f"{m['accuracy']:.3f}",
        f"{m['sensitivity']:.3f}",
        f"{m['specificity']:.3f}",
        f"{m['auc']:.4f}",
    ]


def row(card: dict) -> str:
    training = card["training"]
    config = training["config"]
    last = training["history"][-1]
    ablation = card["metrics"].get("ablation", {})
    after = [
        f"{ablation[split]['as_is']['auc']:.4f} / {ablation[split]['tta']['auc']:.4f}"
        if split in ablation
        else "-"
        for split in ("validation", "atypical")
    ]
    cells = [
        config.get("extra", {}).get("ablation", card["version"]),
        means(config),
        f"{training['epochs']} of {training.get('schedule_epochs', training['epochs'])}",
        *_cells(last),
        *_cells(last.get("atypical")),
        *after,
        f"{training['seconds'] / 60:.0f}",
    ]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    folders = [Path(a) for a in args] or sorted(Path("runs/ablation").glob("*/"))
    print(
        "| run | means | epochs | val acc | val sens | val spec | val AUC | harder acc | "
        "harder sens | harder spec | harder AUC | val AUC after BN re-estimate / with TTA | "
        "harder AUC after BN re-estimate / with TTA | min |"
    )
    print("|" + "---|" * 14)
    for folder in folders:
        path = folder / "model_card.json"
        if path.is_file():
            print(row(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
