"""Two exported models as one ONNX file whose answer is their mean: the bundled model.

    python -m bot.training.ensemble FIRST.onnx SECOND.onnx --promote v2 [--to bot/model]
        [--data ../shared/data/train224]

Both members take the bot's `image` and give `logit`, `cam` (N, 14, 14) and `embedding`. The
ensemble gives the mean logit, the mean CAM (so the logit is still the CAM's mean, and the
heatmap shows the evidence behind the averaged score) and the FIRST member's embedding (the
learned guard's features). Members' large weights are stored as float16 (float32
arithmetic). Two networks that learned differently (a small CNN from scratch, an ImageNet
backbone fine-tuned) disagree on different films, which is what averaging is for.

`--promote` makes it the bundled model: a card built from the bundled one (same data, split,
preprocessing and threshold rule), the temperature fitted on the patient-level validation
split, every figure measured on the shipped file through the bot's decode path. The learned
guard (fitted to the first member's embedding) is then refitted with `bot.training.guard`.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from bot.training.export import half_weights, sha256_file, write_model_card

OUTPUTS = ("logit", "cam", "embedding")


def ensemble(first: Path, second: Path, out: Path) -> Path:
    """Write the mean of two models to `out` (weights as given: see `half_weights`)."""
    import onnx
    from onnx import compose, helper, numpy_helper

    members = [
        compose.add_prefix(onnx.load(str(path)), f"m{i}/") for i, path in enumerate((first, second))
    ]
    opsets = {(o.domain, o.version) for m in members for o in m.opset_import}
    if len(opsets) != 1:
        raise ValueError(f"members use different opsets: {sorted(opsets)}")
    image = members[0].graph.input[0]
    half = numpy_helper.from_array(np.array(0.5, np.float32), "ensemble/half")
    nodes = [helper.make_node("Identity", ["image"], [f"m{i}/image"]) for i in range(2)]
    for m in members:
        nodes.extend(m.graph.node)
    for name in ("logit", "cam"):
        nodes += [
            helper.make_node("Add", [f"m0/{name}", f"m1/{name}"], [f"ensemble/{name}_sum"]),
            helper.make_node("Mul", [f"ensemble/{name}_sum", "ensemble/half"], [name]),
        ]
    nodes.append(helper.make_node("Identity", ["m0/embedding"], ["embedding"]))
    outputs = {o.name.split("/", 1)[1]: o for o in members[0].graph.output}
    graph = helper.make_graph(
        nodes,
        "cxr-ensemble",
        [helper.make_value_info("image", image.type)],
        [helper.make_value_info(name, outputs[name].type) for name in OUTPUTS],
        initializer=[*members[0].graph.initializer, *members[1].graph.initializer, half],
        value_info=[*members[0].graph.value_info, *members[1].graph.value_info],
    )
    model = helper.make_model(graph, opset_imports=members[0].opset_import)
    model.ir_version = members[0].ir_version
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


def promote(
    first: Path, second: Path, version: str, target: Path, data: Path, work: Path
) -> dict[str, Any]:
    """The ensemble of both members (float16 weights) becomes the bundled model."""
    from bot.training.card import rescore
    from bot.training.train import limitations

    work.mkdir(parents=True, exist_ok=True)
    halves = [half_weights(p, work / f"member{i}.onnx") for i, p in enumerate((first, second))]
    name = "cxr-ensemble"
    card = json.loads((target / "model_card.json").read_text(encoding="utf-8"))
    built = ensemble(*halves, work / f"{name}-{version}.onnx")
    card.update(
        name=name,
        version=version,
        file=built.name,
        sha256=sha256_file(built),
        size_bytes=built.stat().st_size,
        created=date.today().isoformat(),
        outputs="`logit` (N,): pneumonia log-odds, the mean of both members'; `cam` (N, 14, "
        "14): the mean of their class activation maps, `logit` is its mean; `embedding` "
        "(N, 1024): the first member's last feature map pooled to 2 x 2 (for the guard)",
        architecture={
            "class": "bot.training.ensemble",
            "parameters": _parameters(built),
            "members": [first.name, second.name],
            "summary": "The mean of two networks that learned differently: cxr-cnn v1, a small "
            "CNN trained from scratch here (0.8 M parameters), and EfficientNet-Lite0 "
            "fine-tuned from its ImageNet weights (the grey film on one input channel, 160 px "
            "inside the network, a 1 x 1 class-activation head, 3.4 M parameters); both on "
            "the same patient-level training split, weights stored as float16",
        },
    )
    card["calibration"] = {
        "method": "temperature scaling of the mean logit on the validation split",
        "temperature": 1.0,
    }
    card["threshold"]["method"] = (
        "the members' own boundary, mean logit 0: both losses are class-balanced and BatchNorm "
        "statistics come from clean images, so 0 is the balanced decision without fitting a "
        "cut to the validation split (this dataset's test split is known to make models "
        "over-call pneumonia, so no cut is tuned towards sensitivity)"
    )
    card["training"] = {
        "command": f"python -m bot.training.ensemble {first} {second} --promote {version}",
        "description": "Not trained itself: the mean of two members trained on the same "
        "patient-level split (cxr-cnn v1: `cxr train`, 20 epochs from scratch; "
        "EfficientNet-Lite0: `python -m bot.training.effnet --split patient`, 3 epochs "
        "fine-tuned). Only the temperature is fitted, on validation.",
        "python": platform.python_version(),
        "config": {"split": "patient"},
    }
    card["metrics"] = {}
    for old in [*target.glob("*.onnx"), target / "film_guard.npz", target / "guard_report.json"]:
        old.unlink(missing_ok=True)
    for key in ("guard", "heatmaps"):
        card.pop(key, None)
    shutil.copyfile(built, target / built.name)
    _save(card, target)
    rescore(card, target, data, fit_temperature=True)  # checks the file against the card
    metrics = card["metrics"]
    card["limitations"] = limitations(
        metrics["validation"], metrics["validation_atypical"], metrics["uncertain_band"]
    )
    write_model_card(card, target)
    return card


def _save(card: dict[str, Any], target: Path) -> None:
    (target / "model_card.json").write_text(json.dumps(card, indent=2, default=float) + "\n")


def _parameters(path: Path) -> int:
    import onnx

    model = onnx.load(str(path))
    return sum(
        int(np.prod(init.dims)) for init in model.graph.initializer if init.name != "ensemble/half"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.training.ensemble")
    parser.add_argument("first", type=Path, help="its embedding feeds the learned guard")
    parser.add_argument("second", type=Path)
    parser.add_argument("--promote", metavar="VERSION", required=True)
    parser.add_argument("--to", type=Path, default=Path("bot/model"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/train224"))
    parser.add_argument("--work", type=Path, default=Path("runs/ensemble"))
    args = parser.parse_args(argv)
    card = promote(args.first, args.second, args.promote, args.to, args.data, args.work)
    print(json.dumps({k: card["metrics"][k]["auc"] for k in ("validation", "validation_atypical")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
