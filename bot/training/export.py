"""ONNX export and the model card (JSON for the bot, Markdown for people)."""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bot.ml.preprocess import INPUT_SIZE
from bot.training import require_torch

torch = require_torch()

OPSET = 17  # onnxruntime >= 1.20 runs it
INPUT_NAME = "image"
OUTPUT_NAMES = ("logit", "cam", "embedding")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def export_onnx(model: torch.nn.Module, path: Path) -> Path:
    """Write `model` (eval mode, an `ExportNet`) as ONNX: input `image` (N, 1, 224, 224)
    float32, outputs `logit` (N,), `cam` (N, 14, 14) and `embedding` (N, E), batch dynamic."""
    from bot.training.model import ExportNet

    if not isinstance(model, ExportNet):
        model = ExportNet(model)
    model = model.eval()
    example = torch.zeros(1, 1, INPUT_SIZE, INPUT_SIZE)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={INPUT_NAME: {0: "n"}, **{name: {0: "n"} for name in OUTPUT_NAMES}},
            do_constant_folding=True,
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


def onnx_agreement(model: torch.nn.Module, path: Path, inputs: np.ndarray) -> float:
    """Largest absolute difference between the torch and the onnxruntime logits on `inputs`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(inputs))[0].numpy()
    got = session.run(["logit"], {INPUT_NAME: inputs})[0]
    return float(np.max(np.abs(expected - got)))


def write_model_card(card: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    """model_card.json and MODEL_CARD.md in `directory`."""
    directory = Path(directory)
    json_path = directory / "model_card.json"
    json_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    md_path = directory / "MODEL_CARD.md"
    md_path.write_text(render_markdown(card), encoding="utf-8")
    return json_path, md_path


def _signed(x: float) -> str:
    return f"{'-' if x < 0 else '+'} {abs(x):.4f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _row(name: str, m: dict[str, Any]) -> str:
    return (
        f"| {name} | {_pct(m['accuracy'])} | {_pct(m['sensitivity'])} | "
        f"{_pct(m['specificity'])} | {_pct(m['precision'])} | {m['f1']:.3f} | {m['auc']:.4f} |"
    )


def _harder_split(card: dict[str, Any]) -> list[str]:
    metrics = card["metrics"]
    if "validation_atypical" not in metrics:
        return []
    return [
        "## Validation metrics (harder split: films atypical for their class)",
        "",
        "Patients whose films, by exposure and processing alone, look most like the other "
        "class. A model that reads the exposure instead of the lungs fails here; this split "
        "is the better guess at how the model does on films from elsewhere.",
        "",
        "| | accuracy | sensitivity | specificity | precision | F1 | ROC AUC |",
        "|---|---|---|---|---|---|---|",
        _row("decision threshold", metrics["validation_atypical"]),
        _row("raw logit >= 0", metrics["validation_atypical_raw"]),
        "",
    ]


def _uncertain_band(card: dict[str, Any]) -> list[str]:
    bands = card["metrics"].get("uncertain_band")
    if not bands:
        return []
    cuts = list(next(iter(bands.values())))
    lines = [
        "## The Uncertain band",
        "",
        "The bot answers Uncertain when the calibrated confidence is under its threshold "
        "(`CXR_CONFIDENCE_THRESHOLD`, default 0.70): a human must read those films. Share of "
        "Uncertain verdicts and accuracy of the rest, per threshold:",
        "",
        "| split | " + " | ".join(cuts) + " |",
        "|---|" + "---|" * len(cuts),
    ]
    for split, band in bands.items():
        cells = [
            f"{_pct(band[c]['uncertain_share'])} / {_pct(band[c]['decided_accuracy'])}"
            for c in cuts
        ]
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _extra_sections(card: dict[str, Any]) -> list[str]:
    """Sections added after training (`bot.training.card`): the guard, the heatmaps."""
    lines: list[str] = []
    for key in ("guard", "heatmaps", "ablation_summary"):
        section = card.get(key)
        if isinstance(section, dict) and section.get("markdown"):
            lines += [f"## {section['title']}", "", section["markdown"], ""]
    return lines


def render_markdown(card: dict[str, Any]) -> str:
    val = card["metrics"]["validation"]
    raw = card["metrics"]["validation_raw"]
    cal = card["calibration"]
    split = card["split"]
    train = card["training"]
    cm = val["confusion_matrix"]
    lines = [
        f"# Model card: {card['name']} {card['version']}",
        "",
        "A network that screens a frontal chest X-ray for pneumonia (Normal vs Pneumonia). "
        "**A screening aid, not a diagnosis.** "
        + card["architecture"].get(
            "summary", "A small CNN trained from scratch (no pretrained weights) by this project"
        )
        + "; runs on a CPU with onnxruntime. Films from "
        "a hospital or machine it has not seen may score lower than the figures below, and an "
        "Uncertain verdict is where a human must look.",
        "",
        "| | |",
        "|---|---|",
        f"| file | `{card['file']}` ({card['size_bytes'] / 1e6:.2f} MB) |",
        f"| sha256 | `{card['sha256']}` |",
        f"| created | {card['created']} |",
        f"| parameters | {card['architecture']['parameters']:,} |",
        f"| input | {card['input']['description']} |",
        f"| outputs | {card['outputs']} |",
        "",
        "## Data",
        "",
        card["data"]["attribution"],
        "",
        f"Training folder: `{card['data']['folder']}` ({card['data']['description']}): "
        f"{card['data']['counts']['NORMAL']} NORMAL, {card['data']['counts']['PNEUMONIA']} "
        "PNEUMONIA images.",
        "",
        "## Split",
        "",
        f"{split['method']} Seed {split['seed']}, validation fraction {split['val_fraction']}.",
        "",
        "| | patients | NORMAL images | PNEUMONIA images |",
        "|---|---|---|---|",
        f"| train | {split['train']['patients']} | {split['train']['NORMAL']} | "
        f"{split['train']['PNEUMONIA']} |",
        f"| validation | {split['validation']['patients']} | {split['validation']['NORMAL']} | "
        f"{split['validation']['PNEUMONIA']} |",
        *(
            [
                "| harder validation (atypical acquisition"
                + (f"; {split['atypical']['note']}" if split["atypical"].get("note") else "")
                + f") | {split['atypical']['patients']} | "
                f"{split['atypical']['NORMAL']} | {split['atypical']['PNEUMONIA']} |"
            ]
            if split.get("atypical", {}).get("patients")
            else []
        ),
        "",
        "## Preprocessing",
        "",
        card["input"]["preprocessing"],
        "",
        "## Training",
        "",
        f"Command: `{train['command']}`",
        "",
        train["description"]
        + (
            f" {train['epochs']} epochs, best epoch {train['best_epoch']} (selected on "
            f"validation AUC), {train['seconds'] / 60:.1f} min on {train['threads']} CPU "
            f"threads, torch {train['torch']}."
            if "epochs" in train
            else ""
        ),
        "",
        "## Decision threshold and calibration",
        "",
        f"Pneumonia when the network's logit is at least **{card['threshold']['logit']:.4f}** "
        f"(raw probability {card['threshold']['raw_probability']:.4f}; "
        f"{card['threshold']['method']}). Calibrated probability: "
        f"`P(pneumonia) = sigmoid((logit {_signed(-card['threshold']['logit'])}) / "
        f"{cal['temperature']:.4f})`, so 0.5 is the decision threshold. The temperature "
        f"**{cal['temperature']:.4f}** was fitted on the validation split (negative "
        "log-likelihood).",
        "",
        f"Expected calibration error ({cal['bins']} bins, top-label): "
        f"**{cal['ece_before']:.4f}** before, **{cal['ece_after']:.4f}** after. "
        f"NLL {cal['nll_before']:.4f} before, {cal['nll_after']:.4f} after.",
        "",
        "## Validation metrics (patient-level split)",
        "",
        "| | accuracy | sensitivity | specificity | precision | F1 | ROC AUC |",
        "|---|---|---|---|---|---|---|",
        f"| decision threshold | {_pct(val['accuracy'])} | {_pct(val['sensitivity'])} | "
        f"{_pct(val['specificity'])} | {_pct(val['precision'])} | {val['f1']:.3f} | "
        f"{val['auc']:.4f} |",
        f"| raw logit >= 0 | {_pct(raw['accuracy'])} | {_pct(raw['sensitivity'])} | "
        f"{_pct(raw['specificity'])} | {_pct(raw['precision'])} | {raw['f1']:.3f} | "
        f"{raw['auc']:.4f} |",
        "",
        f"Confusion matrix at the decision threshold (rows truth, columns predicted): "
        f"normal {cm[0][0]} / {cm[0][1]}, pneumonia {cm[1][0]} / {cm[1][1]}.",
        "",
        *_harder_split(card),
        *_uncertain_band(card),
        *_extra_sections(card),
        "## Limitations",
        "",
        *[f"- {item}" for item in card["limitations"]],
        "",
    ]
    return "\n".join(lines)


def half_weights(source: Path, target: Path, min_size: int = 1024) -> Path:
    """A copy of an ONNX file with its large float32 weights stored as float16, each cast back
    to float32 in the graph: half the file, float32 arithmetic (onnxruntime folds the casts
    into constants when it loads the model, so inference costs the same)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    casts = []
    for init in list(graph.initializer):
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(init)
        if values.size < min_size:
            continue
        half = numpy_helper.from_array(values.astype(np.float16), init.name + "_fp16")
        graph.initializer.remove(init)
        graph.initializer.append(half)
        casts.append(
            helper.make_node(
                "Cast",
                [half.name],
                [init.name],
                to=onnx.TensorProto.FLOAT,
                name=half.name + "_cast",
            )
        )
    for node in reversed(casts):
        graph.node.insert(0, node)
    onnx.checker.check_model(model)
    target = Path(target)
    onnx.save(model, str(target))
    return target
