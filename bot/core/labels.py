"""The two classes the bot screens for, and how scores become a verdict."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Label(StrEnum):
    NORMAL = "Normal"
    PNEUMONIA = "Pneumonia"

    @classmethod
    def parse(cls, name: str) -> Label | None:
        """Match a model's label name case-insensitively (`NORMAL`, `normal`, `Normal`)."""
        folded = name.strip().casefold()
        for label in cls:
            if label.value.casefold() == folded:
                return label
        return None


@dataclass(frozen=True)
class ModelInfo:
    """Which model answered: shown in every reply."""

    kind: str  # "rekognition" or "local"
    name: str  # e.g. "cxr-cnn" or the Rekognition project name
    version: str  # e.g. "v1" or the Rekognition version name

    def describe(self) -> str:
        prefix = "Rekognition" if self.kind == "rekognition" else "local"
        return f"{prefix} {self.name} {self.version}"


@dataclass(frozen=True)
class Prediction:
    """A classifier's raw answer: a probability (0..1) for each label.

    `answer` keeps the model's own label names and scores (scaled to 0..1) when the adapter
    can't vouch for them (Rekognition): `bot.core.model_answer` checks them and fills `scores`.
    """

    scores: dict[Label, float]
    model: ModelInfo
    heatmap_png: bytes | None = None  # class activation map overlay, when the model makes one
    note: str | None = None  # e.g. why a fallback model answered
    answer: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Verdict:
    """What the user reads: a label (or None for "Uncertain") and its confidence."""

    label: Label | None
    confidence: float  # probability of the top label, 0..1
    scores: dict[Label, float]
    model: ModelInfo
    heatmap_png: bytes | None = None
    note: str | None = None

    @property
    def uncertain(self) -> bool:
        return self.label is None


def decide(prediction: Prediction, threshold: float) -> Verdict:
    """Take the top label, unless its probability is under the threshold: then "Uncertain"."""
    scores = {label: float(prediction.scores.get(label, 0.0)) for label in Label}
    top = max(scores, key=lambda label: scores[label])
    confidence = scores[top]
    label = top if confidence >= threshold else None
    return Verdict(
        label, confidence, scores, prediction.model, prediction.heatmap_png, prediction.note
    )
