"""Fit the learned guard (`bot.ml.film_guard`) for one exported model, and measure it.

    python -m bot.training.guard [--model bot/model/cxr-cnn-v2.onnx]
        [--data ../shared/data/train224] [--originals ../shared/data/originals]

Fitted on: the training side of the three-way split (upright films), five transforms of a
sample of them (inverted, turned 90 / 270, turned 180, flipped top to bottom), and the
fitting part of `bot.training.negatives` (photos, textures, documents). Thresholds come from
the validation films (both validation splits): the guard must let through at least 99.5% of
them. Measured on what it never saw: the validation films and their transforms, every
train224 image, the originals at their real size, and the held-out negatives (other photo
sources, other seeds). Writes film_guard.npz beside the model and guard_report.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bot.core.imaging import decode
from bot.core.xray_guard import check_chest_xray
from bot.ml.film_guard import GUARD_FILE, KINDS, FilmGuardModel
from bot.training import negatives
from bot.training.data import list_samples, three_way_split

ORIGINAL_MAX_SIDE = 1024
FILM_ACCEPTANCE = 0.995  # at least this share of validation films must pass
COMPONENTS = 48


def log(message: str) -> None:
    print(message, flush=True)


class Embedder:
    """The exported model's embedding, batched, for decoded images."""

    def __init__(self, model: Path, threads: int) -> None:
        from bot.adapters.onnx_classifier import OnnxClassifier

        self.classifier = OnnxClassifier(model, heatmaps=False, threads=threads)

    def __call__(self, images: list[Image.Image], batch: int = 64) -> np.ndarray:
        from bot.ml.preprocess import preprocess

        equalized = self.classifier.card.equalized
        session = self.classifier._session
        out = []
        for start in range(0, len(images), batch):
            x = np.concatenate(
                [preprocess(im, equalized=equalized) for im in images[start : start + batch]]
            )
            out.append(session.run(["embedding"], {"image": x})[0])
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 1))


def _film(path: Path, max_side: int = 384) -> Image.Image:
    return decode(path.read_bytes(), max_side=max_side, max_pixels=60_000_000)


def fit(
    films: np.ndarray, features: np.ndarray, labels: np.ndarray, val_films: np.ndarray, sha: str
) -> dict[str, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    mean = features.mean(axis=0)
    scale = features.std(axis=0) + 1e-6
    z = (features - mean) / scale
    counts = np.bincount(labels, minlength=len(KINDS))
    weights = (len(labels) / (len(KINDS) * np.maximum(counts, 1)))[labels]
    clf = LogisticRegression(C=0.05, max_iter=3000)
    clf.fit(z, labels, sample_weight=weights)

    pca_mean = films.mean(axis=0)
    centred = films - pca_mean
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:COMPONENTS]
    variances = singular[:COMPONENTS] ** 2 / (len(films) - 1) + 1e-9
    residual = centred - centred @ components.T @ components
    residual_scale = float((residual**2).sum(axis=1).mean()) + 1e-9
    params = {
        "mean": mean,
        "scale": scale,
        "coef": clf.coef_,
        "intercept": clf.intercept_,
        "pca_mean": pca_mean,
        "components": components,
        "variances": variances,
        "residual_scale": np.array(residual_scale),
        "model_sha256": np.array(sha),
        "min_p_film": np.array(0.5),
        "max_distance": np.array(np.inf),
    }
    return params


def _save(params: dict[str, np.ndarray], path: Path) -> FilmGuardModel:
    np.savez_compressed(
        path, **{k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in params.items()}
    )
    return FilmGuardModel(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.training.guard")
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/train224"))
    parser.add_argument("--originals", type=Path, default=Path("../shared/data/originals"))
    parser.add_argument("--transformed", type=int, default=1200, help="films to transform")
    parser.add_argument("--per-source", type=int, default=40, help="variants per photo")
    parser.add_argument("--synthetic", type=int, default=400, help="textures and documents")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rng = random.Random(0)
    embed = Embedder(args.model, args.threads)
    model_path = embed.classifier.path
    sha = embed.classifier.card.sha256

    samples = list_samples(args.data)
    train_set, val_set, later_set = three_way_split(samples)
    held = val_set + later_set
    log(f"films: fit {len(train_set)}, validation {len(held)}")
    fit_films = embed([_film(s.path) for s in train_set])
    held_images = [_film(s.path) for s in held]
    held_films = embed(held_images)
    log(f"embedded films in {time.perf_counter() - started:.0f}s")

    features, labels = [fit_films], [np.zeros(len(fit_films), int)]
    transformed = [
        (kind, image)
        for s in rng.sample(train_set, min(args.transformed, len(train_set)))
        for kind, _, image in negatives.film_transforms(_film(s.path))
    ]
    features.append(embed([image for _, image in transformed]))
    labels.append(np.array([KINDS.index(kind) for kind, _ in transformed]))
    fit_negatives = negatives.photos(False, args.per_source) + negatives.synthetic(
        False, args.synthetic
    )
    features.append(embed([n.image for n in fit_negatives]))
    labels.append(np.full(len(fit_negatives), KINDS.index("other")))
    features = np.concatenate(features)
    labels = np.concatenate(labels)
    log(
        f"fitting on {len(labels)} embeddings "
        f"({dict(zip(KINDS, np.bincount(labels).tolist(), strict=True))}); "
        f"{time.perf_counter() - started:.0f}s"
    )
    params = fit(fit_films, features, labels, held_films, sha)

    # Thresholds from the validation films: the guard must let through FILM_ACCEPTANCE of them.
    path = model_path.parent / GUARD_FILE
    guard = _save(params, path)
    p_film = guard.probabilities(held_films)[:, 0]
    distance = guard.distance(held_films)
    params["min_p_film"] = np.array(min(0.5, float(np.quantile(p_film, 0.002))))
    params["max_distance"] = np.array(float(np.quantile(distance, 0.997)) * 1.25)
    guard = _save(params, path)
    log(f"thresholds: P(film) >= {guard.min_p_film:.4f}, distance <= {guard.max_distance:.2f}")

    report = measure(guard, embed, held, held_images, samples, args.originals, rng)
    report["fit"] = {
        "films": len(fit_films),
        "embeddings": len(labels),
        "per_kind": dict(zip(KINDS, np.bincount(labels).tolist(), strict=True)),
        "photo_sources": sorted({n.source for n in fit_negatives if n.kind == "photo"}),
        "seconds": round(time.perf_counter() - started, 1),
        "thresholds": {"min_p_film": guard.min_p_film, "max_distance": guard.max_distance},
        "model": model_path.name,
    }
    (model_path.parent / "guard_report.json").write_text(json.dumps(report, indent=2) + "\n")
    log(json.dumps({k: v for k, v in report.items() if k != "fit"}, indent=1))
    log(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB); {time.perf_counter() - started:.0f}s")
    return 0


def _refused(guard: FilmGuardModel, embed: Embedder, images: list[Image.Image]) -> list[str | None]:
    """The refusal (heuristic reason or learned class) for each image, None if accepted."""
    out: list[str | None] = [None] * len(images)
    learned = []
    for i, image in enumerate(images):
        try:
            check_chest_xray(image)
            learned.append(i)
        except Exception:
            out[i] = "heuristic"
    if learned:
        judged = guard.judge(embed([images[i] for i in learned]))
        for i, j in zip(learned, judged, strict=True):
            out[i] = j.refusal
    return out


def _share(refusals: list[str | None], refused: bool = True) -> float:
    return float(np.mean([(r is not None) == refused for r in refusals])) if refusals else 0.0


def measure(guard, embed, held, held_images, samples, originals: Path, rng) -> dict:
    report: dict = {}
    r = _refused(guard, embed, held_images)
    report["validation_films_accepted"] = {"share": _share(r, False), "n": len(r)}
    everything = _refused(guard, embed, [_film(s.path) for s in samples])
    report["train224_accepted"] = {"share": _share(everything, False), "n": len(everything)}
    if originals.is_dir():
        paths = sorted(
            p for p in originals.rglob("*") if p.suffix.lower() in {".jpeg", ".jpg", ".png"}
        )
        images = [_film(p, ORIGINAL_MAX_SIDE) for p in paths]
        r = _refused(guard, embed, images)
        report["originals_accepted"] = {"share": _share(r, False), "n": len(r)}
        report["originals_transformed_refused"] = _transforms(guard, embed, images)
    report["validation_transformed_refused"] = _transforms(guard, embed, held_images[::3])
    held_out = negatives.photos(True, 20) + negatives.synthetic(True, 150)
    r = _refused(guard, embed, [n.image for n in held_out])
    by_kind: dict = {}
    for n, refusal in zip(held_out, r, strict=True):
        by_kind.setdefault(n.kind, []).append(refusal)
    report["held_out_negatives_refused"] = {
        kind: {"share": _share(v), "n": len(v), "heuristic": sum(x == "heuristic" for x in v)}
        for kind, v in by_kind.items()
    }
    report["held_out_negatives_refused"]["all"] = {"share": _share(r), "n": len(r)}
    sources: dict = {}
    for n, refusal in zip(held_out, r, strict=True):
        if n.kind == "photo":
            sources.setdefault(n.source, []).append(refusal)
    report["held_out_photos_by_source"] = {k: _share(v) for k, v in sources.items()}
    return report


def _transforms(guard, embed, images: list[Image.Image]) -> dict:
    by: dict = {}
    for image in images:
        for _, name, transformed in negatives.film_transforms(image):
            by.setdefault(name, []).append(transformed)
    out = {}
    total = []
    for name, group in by.items():
        r = _refused(guard, embed, group)
        total += r
        out[name] = {"share": _share(r), "n": len(r)}
    out["all"] = {"share": _share(total), "n": len(total)}
    return out


if __name__ == "__main__":
    raise SystemExit(main())
