"""`cxr`: the local model from the command line.

    cxr classify FILE|DIR... [--json] [--heatmap DIR]  label X-rays as the bot would
    cxr evaluate DIR [--out DIR]    metrics on a folder holding NORMAL/ and PNEUMONIA/
    cxr train [DATA] [--out DIR]    train the local model (needs the train extra: torch)
    cxr deidentify FILE... --out DIR    copies without patient identifiers, to post
    cxr export DIR                      reviewed images from Slack, de-identified

`classify` and `evaluate` go through exactly the bot's steps: `bot.core.imaging.decode` at the
classifier's `max_side`, the not-an-X-ray guard, then the local ONNX classifier.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.core.errors import UserFacingError
from bot.settings import Settings

DEFAULT_THRESHOLD = Settings.model_fields["cxr_confidence_threshold"].default
DEFAULT_MAX_PIXELS = Settings.model_fields["cxr_max_pixels"].default
MODEL_CARD_FILE = "model_card.json"


def number(
    kind: type[int] | type[float],
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Callable[[str], float]:
    """An argparse type: `kind` in [low, high] (an end is open where `*_open`), or a message
    naming the allowed range."""
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    if low is not None and high is not None:
        allowed = f"between {low:g} and {high:g} {left}{low:g}, {high:g}{right}"
    elif low is not None:
        allowed = f"{'above' if low_open else 'at least'} {low:g}"
    else:
        allowed = "a number"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'a whole number' if kind is int else 'a number'}"
            ) from None
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high or value != value:  # NaN is neither
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {allowed}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


THRESHOLD = number(float, 0.5, 1.0)  # the bot's CXR_CONFIDENCE_THRESHOLD range
POSITIVE = number(int, 1)


def onnx_model(text: str) -> Path:
    """An argparse type: an ONNX file exported by `cxr train`, with its model card beside it."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    if not path.is_file() or path.suffix.lower() != ".onnx":
        raise argparse.ArgumentTypeError(
            f"{text} is not an ONNX model: give the .onnx file that `cxr train` exported"
        )
    if not (path.parent / MODEL_CARD_FILE).is_file():
        raise argparse.ArgumentTypeError(
            f"{text} has no {MODEL_CARD_FILE} beside it: `cxr train` writes the two together"
        )
    return path


def _load_classifier(args: argparse.Namespace, heatmaps: bool):
    from bot.adapters.onnx_classifier import OnnxClassifier

    # Asked for on the command line, a heatmap comes with every verdict, Normal ones included.
    return OnnxClassifier(
        args.model, heatmaps=heatmaps, heatmap_normal=heatmaps, threads=args.threads
    )


def _read_image(path: Path, max_side: int):
    """Decode a file as the bot decodes an upload (raises `UserFacingError`)."""
    from bot.core.imaging import decode

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserFacingError(f"I can't read this file ({exc.strerror or exc}).") from None
    return decode(data, max_side=max_side, max_pixels=DEFAULT_MAX_PIXELS)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        type=onnx_model,
        default=None,
        help=f"ONNX file with its {MODEL_CARD_FILE} beside it (default: the bundled model)",
    )
    p.add_argument("--threads", type=POSITIVE, default=1, help="onnxruntime threads (default 1)")


def _add_classify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify",
        help="label chest X-ray files with the local model",
        description="Label chest X-rays as the bot would. A folder gives the images in it, or "
        "those of its class folders (NORMAL/, PNEUMONIA/) one level down.",
    )
    p.add_argument("files", nargs="+", metavar="FILE|DIR")
    p.add_argument("--json", action="store_true", help="print one JSON array")
    p.add_argument("--heatmap", type=Path, metavar="DIR", help="write CAM overlays (PNG) here")
    p.add_argument(
        "--threshold",
        type=THRESHOLD,
        default=DEFAULT_THRESHOLD,
        help="below this confidence (0.5 to 1) the verdict is Uncertain "
        f"(default {DEFAULT_THRESHOLD})",
    )
    _add_model_options(p)


def _classify(args: argparse.Namespace) -> int:
    from bot.core.heatmaps import heatmap_name
    from bot.core.labels import decide
    from bot.core.model_answer import read_answer
    from bot.core.xray_guard import check_chest_xray
    from bot.image_files import find_images

    found = find_images(args.files)
    results: list[dict[str, Any]] = []
    failed = len(found.missing)
    for note in found.notes:
        print(f"cxr classify: {note}", file=sys.stderr)
    for word in found.missing:
        results.append({"file": word, "error": "No such file or folder.", "code": "not_found"})
        if not args.json:
            print(f"{word}: no such file or folder", file=sys.stderr)
    if not found.images:
        if args.json:
            print(json.dumps(results, indent=2))
        return 1
    if args.heatmap and not _writable_folder(args.heatmap, "classify", "--heatmap"):
        return 2
    classifier = _load_classifier(args, heatmaps=args.heatmap is not None)
    written: set[str] = set()
    for path in found.images:
        start = time.perf_counter()
        try:
            image = _read_image(path, classifier.max_side)
            check_chest_xray(image)
            prediction = read_answer(classifier.predict(image))  # the bot's answer contract
        except UserFacingError as exc:
            failed += 1
            results.append({"file": str(path), "error": exc.reply, "code": exc.code})
            if not args.json:
                print(f"{path}: {exc.reply}", file=sys.stderr)
            continue
        ms = (time.perf_counter() - start) * 1e3
        verdict = decide(prediction, args.threshold)
        row: dict[str, Any] = {
            "file": str(path),
            "label": verdict.label.value if verdict.label else "Uncertain",
            "confidence": round(verdict.confidence, 4),
            "scores": {label.value: round(p, 4) for label, p in verdict.scores.items()},
            "model": prediction.model.describe(),
            "ms": round(ms, 1),
        }
        top = max(verdict.scores, key=lambda label: verdict.scores[label])
        row["top"] = top.value  # the class the confidence is for, Uncertain or not
        if args.heatmap and prediction.heatmap_png:
            name = heatmap_name(path.name, written)
            written.add(name)
            target = args.heatmap / name
            target.write_bytes(prediction.heatmap_png)
            row["heatmap"] = str(target)
        results.append(row)
        if not args.json:
            print(
                f"{path}\t{row['label']}\t{top.value} {verdict.confidence:.1%}\t{row['model']}"
                f"\t{ms:.0f} ms" + (f"\t{row['heatmap']}" if "heatmap" in row else "")
            )
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="metrics of the local model on a labelled folder",
        description="Classify every image of DIR/NORMAL and DIR/PNEUMONIA (any case) and "
        "report accuracy, sensitivity, specificity, precision, F1, ROC AUC, the confusion "
        "matrix and the calibration error; write a JSON report and a PNG figure.",
    )
    p.add_argument("dir", type=Path, metavar="DIR")
    p.add_argument("--out", type=Path, default=Path("reports"), help="where the report goes")
    p.add_argument(
        "--validation-split",
        action="store_true",
        help="only the model's patient-level validation split of DIR (its training folder), "
        "rebuilt from the seed and fraction in the model card",
    )
    p.add_argument(
        "--threshold",
        type=THRESHOLD,
        default=DEFAULT_THRESHOLD,
        help="the bot's Uncertain threshold (0.5 to 1), for the share of uncertain verdicts",
    )
    _add_model_options(p)


def _evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from bot.core.xray_guard import check_chest_xray
    from bot.ml import metrics
    from bot.ml.plots import evaluation_png
    from bot.training.data import CLASS_NAMES, list_samples

    if not args.dir.is_dir():
        problem = "is not a folder" if args.dir.exists() else "no such folder"
        print(f"cxr evaluate: {args.dir}: {problem}", file=sys.stderr)
        return 2
    try:
        samples = list_samples(args.dir)
    except FileNotFoundError as exc:
        print(f"cxr evaluate: {exc}", file=sys.stderr)
        return 2
    if not _writable_folder(args.out, "evaluate", "--out"):  # before, not after, the work
        return 2
    classifier = _load_classifier(args, heatmaps=False)
    if args.validation_split:
        from bot.training.data import split_by_patient

        split = classifier.card.raw["split"]
        samples = split_by_patient(samples, split["val_fraction"], split["seed"])[1]
    truth, probs, rows, errors, rejected = [], [], [], [], []
    start = time.perf_counter()
    for sample in samples:
        try:
            image = _read_image(sample.path, classifier.max_side)
        except UserFacingError as exc:
            errors.append({"file": str(sample.path), "error": exc.reply})
            continue
        try:
            check_chest_xray(image)
        except UserFacingError as exc:  # still scored: the figures cover every image
            rejected.append({"file": str(sample.path), "reason": exc.reply})
        p = float(classifier.predict(image, heatmap=False).scores[_pneumonia()])
        truth.append(sample.label)
        probs.append(p)
        rows.append({"file": str(sample.path), "truth": CLASS_NAMES[sample.label], "p": p})
    seconds = time.perf_counter() - start
    if not truth:
        print(f"cxr evaluate: no readable images in {args.dir}", file=sys.stderr)
        return 1
    y, p = np.array(truth), np.array(probs)
    summary = metrics.summarize(y, p, 0.5)
    uncertain = float(np.mean(np.maximum(p, 1 - p) < args.threshold))
    fpr, tpr, _ = metrics.roc_curve(y, p)
    fpr, tpr = roc_corners(fpr, tpr)
    report = {
        "dir": str(args.dir),
        "validation_split": args.validation_split,
        "model": classifier.model.describe(),
        "sha256": classifier.card.sha256,
        "images": len(samples),
        "normal": int((y == 0).sum()),
        "pneumonia": int((y == 1).sum()),
        **summary,
        "uncertain_threshold": args.threshold,
        "uncertain_share": uncertain,
        "guard_rejected": rejected,
        "unreadable": errors,
        "seconds": round(seconds, 2),
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()},
        "predictions": rows,
    }
    cm = summary["confusion_matrix"]
    lines = [
        f"{args.dir}{' (validation split)' if args.validation_split else ''}: {len(y)} images "
        f"({report['normal']} normal, {report['pneumonia']} "
        f"pneumonia), {report['model']}",
        f"accuracy     {summary['accuracy']:.4f}",
        f"sensitivity  {summary['sensitivity']:.4f}",
        f"specificity  {summary['specificity']:.4f}",
        f"precision    {summary['precision']:.4f}",
        f"F1           {summary['f1']:.4f}",
        f"ROC AUC      {summary['auc']:.4f}",
        f"ECE          {summary['ece']:.4f} (15 bins, calibrated probabilities)",
        "confusion matrix (rows truth, columns predicted: Normal, Pneumonia)",
        f"  Normal     {cm[0][0]:5d} {cm[0][1]:5d}",
        f"  Pneumonia  {cm[1][0]:5d} {cm[1][1]:5d}",
        f"uncertain (confidence < {args.threshold:.2f}): {uncertain:.1%}",
        f"not-an-X-ray guard rejected: {len(rejected)}; unreadable: {len(errors)}",
    ]
    json_path = args.out / "evaluation.json"
    png_path = args.out / "evaluation.png"
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    notes = [
        f"accuracy {summary['accuracy']:.3f}  sensitivity {summary['sensitivity']:.3f}",
        f"specificity {summary['specificity']:.3f}  F1 {summary['f1']:.3f}",
        f"ECE {summary['ece']:.3f}",
    ]
    scope = " validation split" if args.validation_split else ""
    title = f"{args.dir.name or args.dir}{scope}: {len(y)} images, {report['model']}"
    operating_point = (1 - summary["specificity"], summary["sensitivity"])
    png_path.write_bytes(
        evaluation_png(fpr, tpr, summary["auc"], cm, title, notes, operating_point)
    )
    lines.append(f"wrote {json_path} and {png_path}")
    print("\n".join(lines))
    return 0


def roc_corners(fpr: Any, tpr: Any) -> tuple[Any, Any]:
    """The ROC curve without repeated points or points in the middle of a straight run: the
    same curve (and AUC), a fraction of the points in the report."""
    import numpy as np

    points = np.column_stack([fpr, tpr]).astype(float)
    keep = [0]
    for i in range(1, len(points) - 1):
        before, after = points[i] - points[keep[-1]], points[i + 1] - points[i]
        if not before.any():
            continue  # the same point again
        if abs(before[0] * after[1] - before[1] * after[0]) < 1e-12 and before @ after >= 0:
            continue  # midway along a straight run
        keep.append(i)
    if len(points) > 1:
        keep.append(len(points) - 1)
    kept = points[keep]
    return kept[:, 0], kept[:, 1]


def _writable_folder(folder: Path, command: str, option: str) -> bool:
    """Make `folder` and prove a file can be written there, or say why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".cxr-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError as exc:
        print(
            f"cxr {command}: can't write to {option} {folder}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return False


def _pneumonia():
    from bot.core.labels import Label

    return Label.PNEUMONIA


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
    p.add_argument("--epochs", type=POSITIVE, default=20)
    p.add_argument("--batch-size", type=POSITIVE, default=64)
    p.add_argument(
        "--lr", type=number(float, 0, low_open=True), default=3e-3, help="peak learning rate"
    )
    p.add_argument("--weight-decay", type=number(float, 0), default=0.02)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--val-fraction", type=number(float, 0, 1, low_open=True, high_open=True), default=0.15
    )
    p.add_argument("--threads", type=POSITIVE, default=2)
    p.add_argument("--width", type=POSITIVE, default=32)
    p.add_argument("--blocks", type=POSITIVE, nargs="+", default=[1, 1, 2])
    p.add_argument(
        "--threshold",
        choices=["zero", "youden"],
        default="zero",
        help="decision cut: the network's own boundary (default) or Youden's J on validation",
    )
    p.add_argument(
        "--ema",
        type=number(float, 0, 1, high_open=True),
        default=0.995,
        help="weight averaging decay (0: off)",
    )
    p.add_argument(
        "--no-bn-recalibration",
        dest="recalibrate_bn",
        action="store_false",
        help="keep BatchNorm statistics from the augmented batches",
    )
    p.add_argument("--max-steps", type=POSITIVE, default=None, help="steps per epoch (smoke tests)")
    p.add_argument("--limit", type=POSITIVE, default=None, help="images per class (smoke tests)")


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
        ema=args.ema,
        recalibrate_bn=args.recalibrate_bn,
        max_steps=args.max_steps,
        limit=args.limit,
        command=shlex.join(["cxr", *argv]),
    )
    train(config)
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write the reviewed images (fetched again from Slack, de-identified) to a folder",
        description="Reviewed verdicts' images under DIR/Normal/ and DIR/Pneumonia/, named "
        "slack-<message>-<file>.png (the message is the grouping key for a patient-level "
        "split), with DIR/manifest.json. Reads CXR_DB_PATH and needs SLACK_BOT_TOKEN.",
    )
    p.add_argument("folder", type=Path, metavar="DIR")


def _export(args: argparse.Namespace) -> int:

    from bot.settings import load_settings

    settings = load_settings()
    if settings.slack_bot_token is None:
        print("cxr export: SLACK_BOT_TOKEN is needed to fetch the images again", file=sys.stderr)
        return 2
    return asyncio.run(export_to_folder(settings, args.folder.resolve()))


async def export_to_folder(settings: Settings, folder: Path) -> int:
    from bot.adapters.export_sinks import FolderSink
    from bot.adapters.slack_files import SlackFileFetcher
    from bot.core.clock import SystemClock
    from bot.core.learning.export import Exporter
    from bot.core.refetch import RefetchingFetcher
    from bot.slack.client import web_client
    from bot.slack.files_info import SlackFileDescriber
    from bot.state.db import Database
    from bot.state.reviews import ReviewStore

    assert settings.slack_bot_token is not None
    fetcher = SlackFileFetcher(settings.slack_bot_token.get_secret_value(), settings.slack_api_url)
    db = await asyncio.to_thread(Database, settings.cxr_db_path)
    try:
        token = settings.slack_bot_token.get_secret_value()
        describer = SlackFileDescriber(web_client(token, settings.slack_api_url))
        exporter = Exporter(
            ReviewStore(db),
            RefetchingFetcher(fetcher, describer),
            SystemClock(),
            max_bytes=settings.max_upload_bytes,
            max_pixels=settings.cxr_max_pixels,
        )
        result = await exporter.export(FolderSink(folder), str(folder))
    finally:
        await fetcher.close()
        await asyncio.to_thread(db.close)
    print(result.text)
    return 0


def _add_deidentify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deidentify",
        help="copies of DICOM files and images without patient identifiers",
        description="DICOM: names, IDs, UIDs (consistently across the files given), dates, "
        "addresses and institutions replaced, private tags, overlays and free text removed, "
        "pixels unchanged; files flagged with burned-in text are refused. Images: metadata "
        "(EXIF, XMP, text) removed. Copies are named 0001.dcm, 0002.jpg… in the order given. "
        "Pixels are not checked for burned-in text: look before you post.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="where copies go")


def _deidentify(args: argparse.Namespace) -> int:
    from bot.deidentify import Deidentifier, Refused

    if not _writable_folder(args.out, "deidentify", "--out"):
        return 2
    run = Deidentifier()
    failed = 0
    for number, path in enumerate(args.files, start=1):
        try:
            copy = run.copy(path.read_bytes())
        except OSError as exc:
            failed += 1
            print(f"{path}: can't read it ({exc.strerror or exc})", file=sys.stderr)
            continue
        except Refused as exc:
            failed += 1
            print(f"{path}: not copied: {exc}", file=sys.stderr)
            continue
        target = args.out / f"{number:04d}{copy.extension}"
        target.write_bytes(copy.data)
        print(f"{path}\t{target}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_classify(sub)
    _add_evaluate(sub)
    _add_train(sub)
    _add_export(sub)
    _add_deidentify(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `cxr classify … | head`: the reader has gone
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.command in ("classify", "evaluate"):
        try:
            return _classify(args) if args.command == "classify" else _evaluate(args)
        except (FileNotFoundError, ValueError) as exc:  # the model file or its card
            print(f"cxr {args.command}: {exc}", file=sys.stderr)
            return 2
    if args.command == "export":
        return _export(args)
    if args.command == "deidentify":
        return _deidentify(args)
    if args.command == "train":
        try:
            return _train(args, argv)
        except (ModuleNotFoundError, FileNotFoundError, ValueError) as exc:
            print(f"cxr train: {exc}", file=sys.stderr)
            return 2
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
