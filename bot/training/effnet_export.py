"""Shrink a fine-tuned EfficientNet-Lite0 run for the bot and check it.

    python -m bot.training.effnet_export runs/effnet/NAME

Writes NAME/bench/cxr-effnet-lite0.onnx (float16 weights, float32 arithmetic) with a minimal
model card (logit 0, the run's temperature fitted on patient-level validation) so that
`bench/bench_local_model.py --model` can time it, and prints the largest logit/CAM difference
between the float32 and the float16-weight files on validation-like inputs.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from bot.ml.preprocess import BORDER, INPUT_SIZE, MAX_SIDE
from bot.training.export import half_weights, sha256_file


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort

    parser = argparse.ArgumentParser(prog="python -m bot.training.effnet_export")
    parser.add_argument("run", type=Path)
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
