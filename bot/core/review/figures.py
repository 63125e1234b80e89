"""How each model version does on the cases clinicians reviewed.

A model's answer is its top label (what it would say with no "Uncertain" band), so each review
counts toward every model that answered the image, including both models when they disagreed.
Reviews labelled "Not assessable" are counted apart and stay out of every proportion; verdicts
shown as "Uncertain" are counted and said, but the model's top label is what is scored.
Pneumonia is the positive class: sensitivity = TP / (TP + FN), specificity = TN / (TN + FP).
Intervals are Wilson score intervals (95%), which stay inside [0, 1] and behave for small n.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from bot.core.labels import Label
from bot.core.review.records import CaseKey, Review

Z95 = 1.959963984540054  # the 97.5th percentile of the standard normal


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for k successes in n trials; (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    p = k / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    denominator = 1 + z2 / n
    return max(0.0, (centre - spread) / denominator), min(1.0, (centre + spread) / denominator)


@dataclass(frozen=True)
class Proportion:
    k: int
    n: int

    @property
    def value(self) -> float | None:
        return self.k / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.k, self.n)

    def describe(self) -> str:
        """ "91.7% (95% CI 64.6–98.5%, 11/12)" or "n/a (0 cases)"."""
        if not self.n:
            return "n/a (no cases)"
        low, high = self.interval
        return (
            f"{self.value * 100:.1f}% (95% CI {low * 100:.1f}–{high * 100:.1f}%, {self.k}/{self.n})"
        )


@dataclass(frozen=True)
class ModelKey:
    kind: str  # rekognition | local
    version: str

    def describe(self) -> str:
        return f"{'Rekognition' if self.kind == 'rekognition' else 'local'} {self.version}"


@dataclass(frozen=True)
class Answer:
    """What one model said about one image."""

    case: CaseKey
    model: ModelKey
    label: Label  # the model's top label
    uncertain: bool = False  # the verdict shown read "Uncertain" (low confidence or disagreement)


@dataclass(frozen=True)
class Confusion:
    """Counts against the reviewers' labels, Pneumonia positive."""

    tp: int = 0
    fn: int = 0
    fp: int = 0
    tn: int = 0

    def add(self, said: Label, truth: Label) -> Confusion:
        positive, correct = truth is Label.PNEUMONIA, said is truth
        return Confusion(
            self.tp + (positive and correct),
            self.fn + (positive and not correct),
            self.fp + (not positive and not correct),
            self.tn + (not positive and correct),
        )

    @property
    def total(self) -> int:
        return self.tp + self.fn + self.fp + self.tn


@dataclass(frozen=True)
class VersionFigures:
    model: ModelKey
    reviewed: int = 0  # every reviewed verdict of this model, "Not assessable" included
    answered: int = 0  # every verdict of this model in the window, reviewed or not
    not_assessable: int = 0
    uncertain: int = 0  # assessable cases whose verdict was shown as "Uncertain"
    confusion: Confusion = field(default_factory=Confusion)

    @property
    def assessable(self) -> int:
        return self.confusion.total

    @property
    def agreement(self) -> Proportion:
        return Proportion(self.confusion.tp + self.confusion.tn, self.confusion.total)

    @property
    def sensitivity(self) -> Proportion:
        return Proportion(self.confusion.tp, self.confusion.tp + self.confusion.fn)

    @property
    def specificity(self) -> Proportion:
        return Proportion(self.confusion.tn, self.confusion.tn + self.confusion.fp)


def figures_by_model(
    answers: Iterable[Answer],
    reviews: Mapping[CaseKey, Review],
    *,
    exclude: frozenset[CaseKey] = frozenset(),
) -> list[VersionFigures]:
    """Figures per model version, from every answer whose case has a (current) review; every
    answer counts in `answered`, so the share reviewed is said (reviewers who review some
    verdicts more than others, say the positives, bias what these figures can show).

    `exclude` drops cases that must not count (those exported for training, when the figure is
    to be read as held out). Sorted by the number of reviewed verdicts, most first.
    """
    acc: dict[ModelKey, VersionFigures] = {}
    for answer in answers:
        if answer.case in exclude:
            continue
        held = acc.get(answer.model) or VersionFigures(answer.model)
        held = replace(held, answered=held.answered + 1)
        review = reviews.get(answer.case)
        if review is not None:
            held = replace(held, reviewed=held.reviewed + 1)
            truth = review.label.label
            if truth is None:  # "Not assessable": counted, outside every proportion
                held = replace(held, not_assessable=held.not_assessable + 1)
            else:
                held = replace(
                    held,
                    uncertain=held.uncertain + answer.uncertain,
                    confusion=held.confusion.add(answer.label, truth),
                )
        acc[answer.model] = held
    return sorted(
        acc.values(), key=lambda f: (-f.reviewed, -f.answered, f.model.kind, f.model.version)
    )
