"""`cxr`: the local model from the command line: classify, evaluate, train."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the local model (needs the train extra: torch)",
        description="Train the local CNN on a folder with NORMAL/ and PNEUMONIA/ (any case), "
        "with a patient-level validation split; export ONNX and the model card.",
    )
    p.add_argument("data", nargs="?", type=Path, default=Path("../shared/data/train224"))
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/cxr-cnn"),
        help="output folder (bot/model replaces the bundled model)",
    )
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (one-cycle)")
    p.add_argument("--weight-decay", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--blocks", type=int, nargs="+", default=[1, 1, 2])
    p.add_argument("--threshold", choices=["youden", "zero"], default="youden")
    p.add_argument("--max-steps", type=int, default=None, help="steps per epoch (smoke tests)")
    p.add_argument("--limit", type=int, default=None, help="images per class (smoke tests)")


def _train(args: argparse.Namespace, argv: list[str]) -> int:
    from bot.training.train import TrainConfig, train

    config = TrainConfig(
        data=args.data,
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        seed=args.seed,
        val_fraction=args.val_fraction,
        threads=args.threads,
        width=args.width,
        blocks=tuple(args.blocks),
        threshold=args.threshold,
        max_steps=args.max_steps,
        limit=args.limit,
        command=shlex.join(["cxr", *argv]),
    )
    train(config)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.command == "train":
        try:
            return _train(args, argv)
        except ModuleNotFoundError as exc:
            print(f"cxr train: {exc}", file=sys.stderr)
            return 2
    return 2
