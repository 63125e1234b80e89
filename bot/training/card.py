"""Add what is measured after training to a model card: the learned guard, the heatmaps.

    python -m bot.training.card DIR [--heatmaps NOTES.md]
    python -m bot.training.card RUN_DIR --promote v2 --to bot/model
    python -m bot.training.card DIR --rescore DATA

`--rescore` (for a model trained on the patient-level split only, like the bundled one) scores
the model file itself, through the bot's decode path, on its own validation patients again
(metrics and calibration error) and on the harder subset of them: the films
`bot.training.data.split_by_atypical_acquisition` holds out that fall among those patients
(never trained on). It records both, the Uncertain band, and brings the limitations up to date.

`--promote` copies a training run's ONNX file into the bundled model folder under its new
version (the file's bytes, hence its hash, unchanged), with its card: version, file name and
limitations brought up to date. The previous bundled model and its guard are removed.

DIR holds model_card.json; its guard_report.json (from `python -m bot.training.guard`) becomes
the card's "guard" section, NOTES.md (what `bench/heatmap_regions.py` found) its "heatmaps"
section. MODEL_CARD.md is rendered again; the model file and its hash are untouched.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from bot.training.export import write_model_card
from bot.training.train import limitations


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def guard_markdown(report: dict[str, Any]) -> str:
    fit = report["fit"]
    negatives = report["held_out_negatives_refused"]
    transformed = report["validation_transformed_refused"]
    rows = [
        "| measured on (never fitted) | result |",
        "|---|---|",
        f"| validation films accepted | {_pct(report['validation_films_accepted']['share'])} "
        f"of {report['validation_films_accepted']['n']} |",
        f"| all train224 films accepted | {_pct(report['train224_accepted']['share'])} of "
        f"{report['train224_accepted']['n']} (includes the films it was fitted on) |",
    ]
    if "originals_accepted" in report:
        rows.append(
            f"| originals (real size) accepted | {_pct(report['originals_accepted']['share'])} "
            f"of {report['originals_accepted']['n']} |"
        )
    for kind, label in (
        ("photo", "grayscale photos (other sources)"),
        ("texture", "textures"),
        ("text", "documents"),
    ):
        if kind in negatives:
            rows.append(
                f"| {label} refused | {_pct(negatives[kind]['share'])} of {negatives[kind]['n']} |"
            )
    for name, value in transformed.items():
        rows.append(f"| validation films {name} refused | {_pct(value['share'])} of {value['n']} |")
    return "\n".join(
        [
            "Before a film is classified, `bot.ml.film_guard` checks that it is an upright chest "
            "film (setting `CXR_GUARD=learned`, the default): a linear classifier on the "
            "model's embedding (film / not a film / inverted / on its side / upside down) and a "
            "distance to the training films. It was fitted on "
            f"{fit['per_kind']['film']} training films, transforms of "
            f"{fit['per_kind']['inverted']} of them, and {fit['per_kind']['other']} other "
            "images: crops of the sample photos shipped in scikit-image, matplotlib and "
            f"scikit-learn ({', '.join(fit['photo_sources'])}), synthetic textures and rendered "
            "documents. "
            f"Thresholds (P(film) >= {fit['thresholds']['min_p_film']:.3f}, distance <= "
            f"{fit['thresholds']['max_distance']:.1f}) were set so that 99.5% of validation films "
            "pass.",
            "",
            *rows,
            "",
            "It has not been measured on other radiographs or on adult chest films; it may accept "
            "them.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.training.card")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--heatmaps", type=Path, default=None)
    parser.add_argument("--promote", metavar="VERSION", default=None)
    parser.add_argument("--to", type=Path, default=None)
    parser.add_argument("--rescore", type=Path, default=None, metavar="DATA")
    args = parser.parse_args(argv)
    card = json.loads((args.directory / "model_card.json").read_text(encoding="utf-8"))
    if args.promote:
        return promote(card, args.directory, args.promote, args.to)
    if args.rescore:
        rescore(card, args.directory, args.rescore)
    metrics = card["metrics"]
    card["limitations"] = limitations(
        metrics["validation"], metrics.get("validation_atypical"), metrics.get("uncertain_band", {})
    )
    report_path = args.directory / "guard_report.json"
    if report_path.is_file():
        report = json.loads(report_path.read_text(encoding="utf-8"))
        card["guard"] = {
            "title": "The learned guard (not a chest X-ray?)",
            "markdown": guard_markdown(report),
            "report": report,
        }
    if args.heatmaps:
        card["heatmaps"] = {
            "title": "Heatmaps: what they show and where they stray",
            "markdown": args.heatmaps.read_text(encoding="utf-8").strip(),
        }
    write_model_card(card, args.directory)
    return 0


def rescore(
    card: dict[str, Any], directory: Path, data: Path, *, fit_temperature: bool = False
) -> None:
    """Score the card's model on its validation splits (`fit_temperature`: first fit the
    card's temperature on the patient-level validation logits)."""
    import numpy as np

    from bot.adapters.onnx_classifier import OnnxClassifier
    from bot.core.imaging import decode
    from bot.ml import calibration, metrics
    from bot.ml.preprocess import MAX_SIDE
    from bot.training.data import (
        list_samples,
        split_by_atypical_acquisition,
        split_by_patient,
        three_way_split,
    )
    from bot.training.train import uncertain_band

    classifier = OnnxClassifier(directory / card["file"], heatmaps=False, threads=2)
    samples = list_samples(data)
    split = card["split"]
    if card["training"]["config"].get("split") == "three-way":
        _, val, harder = three_way_split(samples, split["val_fraction"], split["seed"])
        note = "held out of training (three-way split)"
    else:
        _, val = split_by_patient(samples, split["val_fraction"], split["seed"])
        _, atypical = split_by_atypical_acquisition(samples)
        held = {s.path for s in atypical}
        harder = [s for s in val if s.path in held]
        note = "the atypical-acquisition films among this model's own validation patients"

    def logits(items):
        out = []
        for s in items:
            image = decode(s.path.read_bytes(), max_side=MAX_SIDE, max_pixels=60_000_000)
            out.append(float(classifier.outputs(image)["logit"][0]))
        return np.array(out), np.array([s.label for s in items])

    offset = card["threshold"]["logit"]
    scored = {"validation": logits(val), "atypical": logits(harder)}
    metrics_ = card["metrics"]
    vx, vy = scored["validation"]
    if fit_temperature:
        card["calibration"]["temperature"] = calibration.fit_temperature(vx, vy, offset)
    t = card["calibration"]["temperature"]
    metrics_["validation"] = metrics.summarize(
        vy, calibration.calibrated_probability(vx, t, offset)
    )
    metrics_["validation_raw"] = metrics.summarize(vy, calibration.sigmoid(vx - offset))
    card["calibration"].update(
        bins=15,
        ece_before=metrics_["validation_raw"]["ece"],
        ece_after=metrics_["validation"]["ece"],
        nll_before=calibration.nll(vx, vy, 1.0, offset),
        nll_after=calibration.nll(vx, vy, t, offset),
    )
    lx, ly = scored["atypical"]
    metrics_["validation_atypical"] = metrics.summarize(
        ly, calibration.calibrated_probability(lx, t, offset)
    )
    metrics_["validation_atypical_raw"] = metrics.summarize(ly, calibration.sigmoid(lx))
    metrics_["uncertain_band"] = {
        name: uncertain_band(y, calibration.calibrated_probability(x, t, offset))
        for name, (x, y) in scored.items()
    }
    split["atypical"] = {
        "patients": len({s.patient for s in harder}),
        "NORMAL": sum(s.label == 0 for s in harder),
        "PNEUMONIA": sum(s.label == 1 for s in harder),
        "note": note,
    }
    card["limitations"] = limitations(
        metrics_["validation"], metrics_["validation_atypical"], metrics_["uncertain_band"]
    )


def promote(card: dict[str, Any], run: Path, version: str, target: Path) -> int:
    source = run / card["file"]
    card["version"] = version
    card["file"] = f"{card['name']}-{version}.onnx"
    metrics = card["metrics"]
    card["limitations"] = limitations(
        metrics["validation"], metrics.get("validation_atypical"), metrics.get("uncertain_band", {})
    )
    target.mkdir(parents=True, exist_ok=True)
    for old in [*target.glob("*.onnx"), target / "film_guard.npz", target / "guard_report.json"]:
        old.unlink(missing_ok=True)
    shutil.copyfile(source, target / card["file"])
    write_model_card(card, target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
