"""Train the local model, pick its threshold and temperature, export ONNX and the model card.

    cxr train [DATA] --out bot/model

DATA is a folder with NORMAL/ and PNEUMONIA/ (any case), default ../shared/data/train224.
Deterministic for a given seed and thread count: the split, the initial weights, the batch
order and every augmentation draw come from seeded generators.
"""

from __future__ import annotations

import copy
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bot.core.imaging import decode
from bot.ml import calibration, metrics
from bot.ml.preprocess import BORDER, INPUT_SIZE, MAX_SIDE, equalize, prepare, standardize
from bot.training import require_torch
from bot.training.data import CLASS_NAMES, Sample, list_samples, split_by_patient, three_way_split

torch = require_torch()
F = torch.nn.functional

from bot.training.augment import STRONG, augment  # noqa: E402
from bot.training.export import (  # noqa: E402
    export_onnx,
    onnx_agreement,
    sha256_file,
    write_model_card,
)
from bot.training.model import TTA_ZOOMS, CxrNet, ExportNet  # noqa: E402

DEFAULT_DATA = Path("../shared/data/train224")
ATTRIBUTION = (
    'Chest X-ray images from Kermany, Zhang and Goldbaum (2018), "Labeled Optical Coherence '
    'Tomography (OCT) and Chest X-Ray Images for Classification", Mendeley Data, v2, '
    "doi:10.17632/rscbjbr9sj.2, licensed CC BY 4.0 "
    "(https://creativecommons.org/licenses/by/4.0/): pediatric (ages one to five) anterior-"
    "posterior chest X-rays from Guangzhou Women and Children's Medical Center. The model "
    "weights are derived from these images and carry this attribution."
)


@dataclass
class TrainConfig:
    data: Path = DEFAULT_DATA
    out: Path = Path("runs/cxr-cnn")
    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.02
    seed: int = 0
    val_fraction: float = 0.15
    threads: int = 2
    width: int = 32
    blocks: tuple[int, ...] = (1, 1, 2)
    threshold: str = "zero"  # the network's own boundary, or "youden" (fitted on validation)
    ema: float = 0.995  # weight averaging per step (0: off); evaluated and exported
    recalibrate_bn: bool = True  # re-estimate BatchNorm statistics on clean images at the end
    stop_after: int | None = None  # end after this epoch (short ablations; the LR schedule
    # still spans `epochs`, so runs stopped at the same epoch compare)
    max_steps: int | None = None  # per epoch, for smoke tests
    limit: int | None = None  # images per class, for smoke tests
    split: str = "three-way"  # also hold out the latest admissions ("patient": that split only)
    equalize: bool = False  # histogram equalisation before standardizing
    augmentation: str = "standard"  # or "strong"
    label_smoothing: float = 0.0
    tta: bool = False  # export the logit averaged over test-time zooms
    name: str = "cxr-cnn"
    version: str = "v1"
    command: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def model_file(config: TrainConfig) -> str:
    """The ONNX file's name: the model's name and version."""
    return f"{config.name}-{config.version}.onnx"


def finish(pixels, equalized: bool):
    """The steps after `prepare` (and training's augmentation): as `bot.ml.preprocess`."""
    if equalized:
        if isinstance(pixels, np.ndarray):
            pixels = equalize(pixels)
        else:
            pixels = torch.from_numpy(equalize(pixels.numpy()))
    return standardize(pixels)


def uncertain_band(y: np.ndarray, p: np.ndarray, cuts=(0.6, 0.65, 0.7, 0.75, 0.8)) -> dict:
    """For each confidence cut: the share of verdicts that would be Uncertain and the accuracy
    of the others (how the bot's Uncertain band trades answers for accuracy)."""
    confidence = np.maximum(p, 1 - p)
    out = {}
    for cut in cuts:
        decided = confidence >= cut
        correct = (p[decided] >= 0.5) == (y[decided] == 1)
        out[f"{cut:.2f}"] = {
            "uncertain_share": float(1 - decided.mean()),
            "decided_accuracy": float(correct.mean()) if decided.any() else float("nan"),
        }
    return out


def limitations(val: dict, atypical: dict | None, bands: dict) -> list[str]:
    """What a user must know, most important first (`/cxr status` shows the first five)."""
    harder = (
        f" On harder validation films (exposed like the other class) accuracy is "
        f"{atypical['accuracy']:.1%} (sensitivity {atypical['sensitivity']:.1%}, specificity "
        f"{atypical['specificity']:.1%}), against {val['accuracy']:.1%} "
        f"({val['sensitivity']:.1%}, {val['specificity']:.1%}) on the patient-level split."
        if atypical
        else ""
    )
    band = bands.get("validation", {}).get("0.70")
    share = (
        f" (on validation, {band['uncertain_share']:.1%} of films; "
        f"{band['decided_accuracy']:.1%} of the others are right)"
        if band
        else ""
    )
    return [
        "Films from a hospital, machine or export it has not seen may score lower than the "
        "figures here: every validation film comes from the training hospital." + harder,
        "An Uncertain verdict (confidence under the bot's threshold, 70% by default) is where a "
        "human must look" + share + "; a confident verdict can still be wrong.",
        "Pediatric (ages 1-5) AP films from one hospital; adults and other sites are out of "
        "distribution.",
        "Two classes only: no other findings, no bacterial/viral distinction.",
        "A screening aid for triage and teaching, not a diagnosis.",
    ]


def log(message: str) -> None:
    print(message, flush=True)


def load_images(samples: list[Sample]) -> np.ndarray:
    """`prepare`d images (N, 1, S, S) float32 0..1, decoded the way the bot decodes uploads."""
    out = np.empty((len(samples), 1, INPUT_SIZE, INPUT_SIZE), np.float32)
    for i, sample in enumerate(samples):
        image = decode(sample.path.read_bytes(), max_side=MAX_SIDE, max_pixels=60_000_000)
        out[i, 0] = prepare(image)
    return out


def predict_logits(model, images: np.ndarray, batch: int = 128) -> np.ndarray:
    """Raw logits for already standardized images."""
    model.eval()
    outs = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = torch.from_numpy(images[start : start + batch])
            outs.append(model(x.contiguous(memory_format=torch.channels_last))[0].numpy())
    return np.concatenate(outs) if outs else np.zeros(0, np.float32)


class WeightAverage:
    """An exponential moving average of the model's weights (and a copy of its buffers).

    Single-epoch weights swing: heavy intensity augmentation moves the decision boundary from
    one epoch to the next while the ranking (AUC) barely changes. The average is steadier, and
    it is what gets validated, selected and exported.
    """

    def __init__(self, model, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model)
        self.model.eval()
        self.updates = 0

    @torch.no_grad()
    def update(self, model) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))  # warm-up
        for average, current in zip(self.model.parameters(), model.parameters(), strict=True):
            average.mul_(decay).add_(current.detach(), alpha=1 - decay)
        for average, current in zip(self.model.buffers(), model.buffers(), strict=True):
            average.copy_(current)


@torch.no_grad()
def recalibrate_batchnorm(
    model, images: torch.Tensor, equalized: bool = False, batch: int = 128
) -> None:
    """Re-estimate BatchNorm's running statistics on clean (unaugmented, standardized) images:
    the statistics seen in training come from augmented batches, not from what inference sees."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over every batch below
    model.train()
    for start in range(0, len(images), batch):
        x = finish(images[start : start + batch], equalized)
        model(x.contiguous(memory_format=torch.channels_last))
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    model.eval()


def _counts(samples: list[Sample]) -> dict[str, int]:
    return {
        "patients": len({s.patient for s in samples}),
        "NORMAL": sum(s.label == 0 for s in samples),
        "PNEUMONIA": sum(s.label == 1 for s in samples),
    }


def _fmt(m: dict[str, Any]) -> str:
    return (
        f"acc {m['accuracy']:.3f} sens {m['sensitivity']:.3f} spec {m['specificity']:.3f} "
        f"f1 {m['f1']:.3f} auc {m['auc']:.4f}"
    )


def train(config: TrainConfig) -> dict[str, Any]:
    """Run the whole pipeline; returns the model card (also written next to the ONNX file)."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)

    samples = list_samples(config.data)
    if config.limit:  # the first `limit` images of each class
        samples = sorted(
            [s for s in samples if s.label == 0][: config.limit]
            + [s for s in samples if s.label == 1][: config.limit],
            key=lambda s: str(s.path),
        )
    if config.split == "three-way":
        train_set, val_set, atypical_set = three_way_split(
            samples, config.val_fraction, config.seed
        )
    else:
        train_set, val_set = split_by_patient(samples, config.val_fraction, config.seed)
        atypical_set = []
    if not train_set or not val_set:
        raise ValueError(f"not enough patients in {config.data} to split")
    log(
        f"data {config.data}: {len(samples)} images; train {_counts(train_set)}, "
        f"validation {_counts(val_set)} (patient-level split, seed {config.seed}); "
        f"atypical acquisition {_counts(atypical_set)}"
    )

    t0 = time.perf_counter()
    x_train = torch.from_numpy(load_images(train_set))
    x_val = finish(load_images(val_set), config.equalize)  # exactly bot.ml.preprocess
    x_atypical = finish(load_images(atypical_set), config.equalize) if atypical_set else None
    y_atypical = np.array([s.label for s in atypical_set])
    aug = STRONG if config.augmentation == "strong" else {}
    y_train = torch.tensor([s.label for s in train_set], dtype=torch.float32)
    y_val = np.array([s.label for s in val_set])
    log(f"loaded and preprocessed {len(samples)} images in {time.perf_counter() - t0:.1f}s")

    model = CxrNet(config.width, tuple(config.blocks)).to(memory_format=torch.channels_last)
    parameters = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay}],
        lr=config.lr,
        weight_decay=0.0,
    )
    steps = math.ceil(len(train_set) / config.batch_size)
    if config.max_steps:
        steps = min(steps, config.max_steps)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps, pct_start=0.2
    )
    # Class imbalance: each class weighs half of the loss (inverse-frequency weights).
    n_pos = float(y_train.sum())
    n_neg = float(len(y_train) - n_pos)
    class_weight = torch.tensor([len(y_train) / (2 * n_neg), len(y_train) / (2 * n_pos)])
    log(
        f"model CxrNet width {config.width} blocks {list(config.blocks)}: {parameters:,} "
        f"parameters; {config.epochs} epochs x {steps} steps of {config.batch_size}; "
        f"class weights normal {class_weight[0]:.3f} pneumonia {class_weight[1]:.3f}"
    )

    average = WeightAverage(model, config.ema) if config.ema else None
    gen = torch.Generator().manual_seed(config.seed)
    best: dict[str, Any] = {"key": (-1.0, 0.0)}
    history = []
    for epoch in range(1, config.epochs + 1):
        t_epoch = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_set), generator=gen)
        total, seen = 0.0, 0
        for step in range(steps):
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            if len(idx) < 2:
                continue
            x = finish(augment(x_train[idx], gen, **aug), config.equalize)
            y = y_train[idx]
            logit, _ = model(x.contiguous(memory_format=torch.channels_last))
            target = y * (1 - config.label_smoothing) + 0.5 * config.label_smoothing
            loss = F.binary_cross_entropy_with_logits(logit, target, weight=class_weight[y.long()])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if average is not None:
                average.update(model)
            total += loss.item() * len(idx)
            seen += len(idx)
        evaluated = average.model if average is not None else model
        val_logits = predict_logits(evaluated, x_val)
        val = metrics.summarize(y_val, calibration.sigmoid(val_logits), 0.5)
        val_loss = calibration.nll(val_logits, y_val)
        seconds = time.perf_counter() - t_epoch
        history.append({"epoch": epoch, "loss": total / max(seen, 1), "val_loss": val_loss, **val})
        if x_atypical is not None:
            atypical = metrics.summarize(
                y_atypical, calibration.sigmoid(predict_logits(evaluated, x_atypical)), 0.5
            )
            history[-1]["atypical"] = atypical
            log(f"          atypical acquisition: {_fmt(atypical)}")
        key = (val["auc"] if not math.isnan(val["auc"]) else 0.0, -val_loss)
        mark = ""
        if key > best["key"]:
            best = {"key": key, "epoch": epoch, "state": copy.deepcopy(evaluated.state_dict())}
            mark = "  *best"
        log(
            f"epoch {epoch:2d}/{config.epochs}  loss {total / max(seen, 1):.4f}  "
            f"val loss {val_loss:.4f}  {_fmt(val)}  lr {scheduler.get_last_lr()[0]:.2e}  "
            f"{seconds:.0f}s (total {(time.perf_counter() - started) / 60:.1f} min){mark}"
        )
        if config.stop_after and epoch >= config.stop_after:
            log(f"stopping after epoch {epoch} of a {config.epochs}-epoch schedule")
            break

    model.load_state_dict(best["state"])
    model.eval()
    if config.recalibrate_bn:
        before = metrics.summarize(y_val, calibration.sigmoid(predict_logits(model, x_val)), 0.5)
        recalibrate_batchnorm(model, x_train, config.equalize)
        after = metrics.summarize(y_val, calibration.sigmoid(predict_logits(model, x_val)), 0.5)
        log(f"BatchNorm statistics re-estimated on clean images: {_fmt(before)} -> {_fmt(after)}")
    plain = {"validation": predict_logits(model, x_val)}
    exported = ExportNet(model, TTA_ZOOMS if config.tta else (1.0,)).eval()
    tta = ExportNet(model, TTA_ZOOMS).eval()
    with_tta = {"validation": predict_logits(tta, x_val)}
    if x_atypical is not None:
        plain["atypical"] = predict_logits(model, x_atypical)
        with_tta["atypical"] = predict_logits(tta, x_atypical)
    for split, y in (("validation", y_val), ("atypical", y_atypical)):
        if split in plain:
            log(f"{split}: as is {_fmt(metrics.summarize(y, calibration.sigmoid(plain[split])))}")
            log(
                f"{split}: TTA   {_fmt(metrics.summarize(y, calibration.sigmoid(with_tta[split])))}"
            )
    chosen = with_tta if config.tta else plain
    val_logits = chosen["validation"]
    youden = calibration.youden_threshold(val_logits, y_val)
    log(
        f"Youden cut on validation: logit {youden:.4f}: "
        f"{_fmt(metrics.summarize(y_val, calibration.sigmoid(val_logits - youden), 0.5))}"
    )
    if config.threshold == "youden":
        offset = youden
        method = (
            "Youden's J (sensitivity + specificity - 1) maximised on the validation split, "
            "near-ties (within 0.01) broken towards the more specific cut"
        )
    else:
        offset = 0.0
        method = (
            "the network's own boundary, logit 0: the loss is class-balanced and BatchNorm "
            "statistics come from clean images, so 0 is the balanced decision without fitting "
            f"a cut to the validation split (its Youden cut, logit {youden:.2f}, would be less "
            "specific; this dataset's test split is known to make models over-call pneumonia)"
        )
    temperature = calibration.fit_temperature(val_logits, y_val, offset)
    p_raw = calibration.sigmoid(val_logits)
    p_cal = calibration.calibrated_probability(val_logits, temperature, offset)
    raw = metrics.summarize(y_val, p_raw, 0.5)
    decided = metrics.summarize(y_val, p_cal, 0.5)
    log(f"best epoch {best['epoch']}: raw (logit >= 0)  {_fmt(raw)}")
    log(f"threshold logit {offset:.4f} (raw p {calibration.sigmoid(offset):.4f}): {_fmt(decided)}")
    log(
        f"temperature {temperature:.4f}: ECE {raw['ece']:.4f} -> {decided['ece']:.4f}, "
        f"NLL {calibration.nll(val_logits, y_val):.4f} -> "
        f"{calibration.nll(val_logits, y_val, temperature, offset):.4f}"
    )

    out = Path(config.out)
    atypical_metrics = {}
    if x_atypical is not None:
        p_atypical = calibration.calibrated_probability(chosen["atypical"], temperature, offset)
        atypical_metrics = {
            "validation_atypical": metrics.summarize(y_atypical, p_atypical, 0.5),
            "validation_atypical_raw": metrics.summarize(
                y_atypical, calibration.sigmoid(chosen["atypical"]), 0.5
            ),
        }
        log(f"atypical acquisition, calibrated: {_fmt(atypical_metrics['validation_atypical'])}")
    bands = {
        split: uncertain_band(
            y, calibration.calibrated_probability(chosen[split], temperature, offset)
        )
        for split, y in (("validation", y_val), ("atypical", y_atypical))
        if split in chosen
    }
    for split, band in bands.items():
        log(f"{split}: {band}")

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "weights.pt")  # for re-export; not shipped
    onnx_path = export_onnx(exported, out / model_file(config))
    diff = onnx_agreement(exported, onnx_path, x_val[: min(len(x_val), 64)])
    seconds = time.perf_counter() - started
    log(
        f"exported {onnx_path} ({onnx_path.stat().st_size / 1e6:.2f} MB); torch/ONNX max diff {diff:.2e}"
    )

    card = {
        "name": config.name,
        "version": config.version,
        "kind": "local",
        "file": model_file(config),
        "sha256": sha256_file(onnx_path),
        "size_bytes": onnx_path.stat().st_size,
        "created": datetime.now(UTC).strftime("%Y-%m-%d"),
        "labels": ["Normal", "Pneumonia"],
        "input": {
            "name": "image",
            "shape": [None, 1, INPUT_SIZE, INPUT_SIZE],
            "size": INPUT_SIZE,
            "border": BORDER,
            "max_side": MAX_SIDE,
            "equalize": config.equalize,
            "description": f"1 x {INPUT_SIZE} x {INPUT_SIZE} grayscale, per-image standardized",
            "preprocessing": (
                "`bot.ml.preprocess.preprocess`, shared by training and inference: decode "
                f"upright at most {MAX_SIDE} px a side (`bot.core.imaging.decode`), convert to "
                f"grayscale, trim {BORDER:.0%} from each side, resize to {INPUT_SIZE} x "
                f"{INPUT_SIZE} (bilinear, aspect ratio not kept, as the training images were "
                "squashed), scale to 0..1, "
                + ("histogram-equalise (mid-rank, 256 levels), " if config.equalize else "")
                + "then zero mean and unit variance per image. Training augments between the "
                "resize and the "
                + ("equalisation" if config.equalize else "standardization")
                + (
                    ": strong augmentation: random zoom (+-25%), aspect (+-10%), rotation "
                    "(+-12 deg), shift (+-10%), gamma (x e^+-0.7), windowing, tone curve, "
                    "blur, unsharp masking, an erased patch and noise."
                    if config.augmentation == "strong"
                    else ": random zoom (+-15%), aspect (+-10%), rotation (+-8 deg), shift "
                    "(+-6%), gamma (x e^+-0.4), windowing, blur and noise."
                )
                + (
                    f" The exported logit averages test-time zooms {list(TTA_ZOOMS)}."
                    if config.tta
                    else ""
                )
            ),
        },
        "outputs": "`logit` (N,): pneumonia log-odds; `cam` (N, 14, 14): class activation "
        "map, `logit` is its mean",
        "threshold": {
            "logit": offset,
            "raw_probability": float(calibration.sigmoid(offset)),
            "method": method,
        },
        "calibration": {
            "method": "temperature scaling on the validation split",
            "temperature": temperature,
            "bins": 15,
            "ece_before": raw["ece"],
            "ece_after": decided["ece"],
            "nll_before": calibration.nll(val_logits, y_val),
            "nll_after": calibration.nll(val_logits, y_val, temperature, offset),
        },
        "metrics": {
            "validation": decided,
            "validation_raw": raw,
            **atypical_metrics,
            "uncertain_band": bands,
            "ablation": {
                split: {
                    "as_is": metrics.summarize(y, calibration.sigmoid(plain[split])),
                    "tta": metrics.summarize(y, calibration.sigmoid(with_tta[split])),
                }
                for split, y in (("validation", y_val), ("atypical", y_atypical))
                if split in plain
            },
        },
        "data": {
            "attribution": ATTRIBUTION,
            "licence": "CC BY 4.0",
            "doi": "10.17632/rscbjbr9sj.2",
            "folder": str(config.data),
            "description": "the dataset's official training split, 224 x 224 RGB JPEG",
            "counts": {
                name: sum(s.label == i for s in samples) for i, name in enumerate(CLASS_NAMES)
            },
        },
        "split": {
            "method": "Patient-level: patients (from file names) shuffled per class with the "
            "seed, about 15% of each class's patients to validation; no patient on both sides."
            + (
                " Held out first, as a harder second validation split ('atypical "
                "acquisition'): within each class, the ~15% of patients whose films look most "
                "like the other class by exposure and processing alone (mean, contrast, tone "
                "curve, sharpness, dark border; `bot.training.data."
                "split_by_atypical_acquisition`); train and both validation splits share no "
                "patient."
                if atypical_set
                else ""
            ),
            "seed": config.seed,
            "val_fraction": config.val_fraction,
            "train": _counts(train_set),
            "validation": _counts(val_set),
            "atypical": _counts(atypical_set),
        },
        "architecture": {
            "class": "bot.training.model.CxrNet",
            "parameters": parameters,
            **model.config,
        },
        "training": {
            "command": config.command or "cxr train",
            "description": (
                "From scratch (no pretrained weights). AdamW (weight decay "
                f"{config.weight_decay}), one-cycle LR peaking at {config.lr}, batch "
                f"{config.batch_size}, class-weighted binary cross-entropy, seed {config.seed}"
                + (f"; weights averaged (EMA {config.ema} per step)" if config.ema else "")
                + (
                    "; BatchNorm statistics re-estimated on clean training images"
                    if config.recalibrate_bn
                    else ""
                )
                + "."
            ),
            "epochs": len(history),
            "schedule_epochs": config.epochs,
            "best_epoch": best["epoch"],
            "seconds": round(seconds, 1),
            "threads": config.threads,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "onnx_max_abs_diff": diff,
            "config": {
                k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()
            },
            "history": history,
        },
        "limitations": limitations(decided, atypical_metrics.get("validation_atypical"), bands),
    }
    write_model_card(card, out)
    log(f"model card {out / 'model_card.json'}; total {seconds / 60:.1f} min")
    return card


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - thin wrapper
    from bot.cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])
