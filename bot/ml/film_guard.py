"""The learned guard: does the local model's view of this image look like an upright chest film?

The heuristic guard (`bot.core.xray_guard`) catches colour, pages, flat graphics and blanks.
It cannot tell a grayscale photo, a texture or an inverted or rotated film from a chest X-ray,
and the classifier answers those with confident labels. This guard runs the bundled model once
(its `embedding` output: the last feature map pooled to 2 x 2) and asks two questions fitted
on the training films and on images that are not upright films (`bot.training.guard`):

- which of five kinds is it: an upright film, something else, an inverted film, a film on its
  side, an upside-down film (a linear classifier on the embedding);
- how far is it from the training films (a Mahalanobis distance in the embedding's principal
  components, plus what those components leave out), which catches kinds never fitted.

The model's outputs are kept on the image (`image.info`), so the local classifier that runs
next reuses them instead of running the model a second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bot.core.errors import ClassifierUnavailable, NotAChestXray
from bot.core.xray_guard import check_chest_xray

GUARD_FILE = "film_guard.npz"
KINDS = ("film", "other", "inverted", "sideways", "upside_down")
SURE = 0.8  # the least probability at which a refusal names the transform it saw

_ASK = "Please post a frontal chest X-ray, upright, as a PNG or JPEG."
REPLIES = {
    "other": "This doesn't look like a chest X-ray, so I won't label it. " + _ASK,
    "far": (
        "This looks unlike the chest X-rays this model was trained on (children's frontal "
        "films), so I won't label it. " + _ASK
    ),
    "inverted": (
        "This looks like a chest X-ray with its grey levels inverted (bones dark), so I won't "
        "label it. Please post the film as it is normally displayed."
    ),
    "sideways": (
        "This looks like a chest X-ray turned on its side, so I won't label it. "
        "Please rotate it upright (head at the top) and post it again."
    ),
    "upside_down": (
        "This looks like a chest X-ray upside down, so I won't label it. "
        "Please rotate it upright (head at the top) and post it again."
    ),
}


@dataclass(frozen=True)
class GuardJudgement:
    kind: str  # one of KINDS
    p_film: float
    distance: float
    refusal: str | None  # the REPLIES key, or None when accepted


class FilmGuardModel:
    """The fitted parameters (`film_guard.npz`) and the decision rule, numpy only."""

    def __init__(self, path: Path) -> None:
        with np.load(path, allow_pickle=False) as data:
            self.params = {key: data[key] for key in data.files}
        self.model_sha256 = str(self.params["model_sha256"])
        self.min_p_film = float(self.params["min_p_film"])
        self.max_distance = float(self.params["max_distance"])

    def probabilities(self, embedding: np.ndarray) -> np.ndarray:
        """P(kind) for embeddings (N, E) -> (N, len(KINDS))."""
        z = (embedding - self.params["mean"]) / self.params["scale"]
        scores = z @ self.params["coef"].T + self.params["intercept"]
        scores -= scores.max(axis=1, keepdims=True)
        e = np.exp(scores)
        return e / e.sum(axis=1, keepdims=True)

    def distance(self, embedding: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance to the training films in the top principal components,
        plus the residual outside them, each per dimension (about 1 for a typical film)."""
        centred = embedding - self.params["pca_mean"]
        components = self.params["components"]
        projected = centred @ components.T
        inside = (projected**2 / self.params["variances"]).mean(axis=1)
        residual = centred - projected @ components
        outside = (residual**2).sum(axis=1) / self.params["residual_scale"]
        return inside + outside

    def judge(self, embedding: np.ndarray) -> list[GuardJudgement]:
        embedding = np.asarray(embedding, dtype=np.float64).reshape(len(embedding), -1)
        probs = self.probabilities(embedding)
        dist = self.distance(embedding)
        out = []
        for p, d in zip(probs, dist, strict=True):
            kind = KINDS[int(np.argmax(p))]
            refusal = None
            if p[0] < self.min_p_film:
                # Name a transform only when sure of it: a head MRI is "not a chest X-ray", not
                # "a chest X-ray on its side".
                sure = kind in ("inverted", "sideways", "upside_down") and p.max() >= SURE
                refusal = kind if sure else "other"
            elif d > self.max_distance:
                refusal = "far"
            out.append(GuardJudgement(kind, float(p[0]), float(d), refusal))
        return out


class FilmGuard:
    """The guard the intake calls: the heuristic checks, then the learned ones.

    Raises `NotAChestXray` with a short reply that says what it saw."""

    def __init__(self, model_path: Path | None = None, *, threads: int = 1) -> None:
        from bot.adapters.onnx_classifier import OnnxClassifier

        self.runner = OnnxClassifier(model_path, heatmaps=False, threads=threads)
        guard_path = self.runner.path.parent / GUARD_FILE
        if not guard_path.is_file():
            raise FileNotFoundError(f"learned guard not found: {guard_path}")
        self.model = FilmGuardModel(guard_path)
        if self.model.model_sha256 != self.runner.card.sha256:
            raise ValueError(
                f"{guard_path} was fitted for another model; refit it with "
                "`python -m bot.training.guard`"
            )

    def judge(self, image: Image.Image) -> GuardJudgement:
        try:
            embedding = self.runner.outputs(image)["embedding"]
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ClassifierUnavailable(
                "The local model failed on this image. Please try again.", detail=repr(exc)
            ) from exc
        return self.model.judge(embedding)[0]

    def __call__(self, image: Image.Image) -> None:
        check_chest_xray(image)
        judgement = self.judge(image)
        if judgement.refusal:
            raise NotAChestXray(
                REPLIES[judgement.refusal],
                detail=(
                    f"learned guard: {judgement.refusal}, kind={judgement.kind} "
                    f"p_film={judgement.p_film:.3f} distance={judgement.distance:.2f}"
                ),
            )
