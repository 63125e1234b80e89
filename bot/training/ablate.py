"""One training run of an ablation: each means switched on by a flag, scored on both
validation splits (patient-level and later admissions).

    python -m bot.training.ablate NAME [--epochs N] [--equalize] [--strong] [--smooth E]
        [--tta] [--stop-after K] [--split three-way|patient] [--data DIR] [--out runs/ablation]

Writes runs/ablation/NAME/ (ONNX, model_card.json with the figures); `bench/ablation_table.py`
turns those cards into the table in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bot.training.train import DEFAULT_DATA, TrainConfig, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.training.ablate")
    parser.add_argument("name")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--equalize", action="store_true")
    parser.add_argument("--strong", action="store_true", help="strong augmentation")
    parser.add_argument("--smooth", type=float, default=0.0, help="label smoothing")
    parser.add_argument("--tta", action="store_true", help="export with test-time zooms")
    parser.add_argument("--stop-after", type=int, default=None, help="end after this epoch")
    parser.add_argument("--split", choices=("three-way", "patient"), default="three-way")
    parser.add_argument("--version", default="ablation")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--max-steps", type=int, default=None)
    args = parser.parse_args(argv)
    config = TrainConfig(
        data=args.data,
        out=args.out / args.name,
        epochs=args.epochs,
        equalize=args.equalize,
        augmentation="strong" if args.strong else "standard",
        label_smoothing=args.smooth,
        tta=args.tta,
        threads=args.threads,
        limit=args.limit,
        max_steps=args.max_steps,
        stop_after=args.stop_after,
        split=args.split,
        version=args.version,
        command="python -m bot.training.ablate " + " ".join(argv or sys.argv[1:]),
        extra={"ablation": args.name},
    )
    train(config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
