"""Should a candidate model version replace the served one? The measure, and whether it is worse.

Reviewed cases beat Rekognition's own test set: when the candidate is running and at least
`min_reviewed` reviewed cases (labelled Normal or Pneumonia, none used for training) are at
hand, both versions answer those same images and their agreement with the reviewers is compared.
Otherwise the comparison falls back on Rekognition's evaluation (F1, per-label precision and
recall), which is labelled "in-distribution": it was measured on a split of the training data.
A candidate worse by the measure used is refused unless an admin confirms twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from bot.core.model_versions import LabelMetrics
from bot.core.review.figures import Proportion

IN_DISTRIBUTION = "in-distribution"


class Measure(StrEnum):
    AGREEMENT = "agreement"  # on reviewed cases, both versions answering the same images
    F1 = "F1"  # Rekognition's evaluation on its own test split


def choose_measure(*, candidate_running: bool, reviewed_cases: int, min_reviewed: int) -> Measure:
    if candidate_running and reviewed_cases >= min_reviewed:
        return Measure.AGREEMENT
    return Measure.F1


@dataclass(frozen=True)
class Evaluated:
    """One version's figures by one measure (agreement comes with its cases; F1 with labels)."""

    name: str
    value: float | None
    agreement: Proportion | None = None
    labels: tuple[LabelMetrics, ...] = ()


@dataclass(frozen=True)
class Paired:
    """Where two versions answering the same cases differ: only the candidate right (`b`), only
    the served version right (`c`). The exact McNemar test asks whether that split is more
    lopsided than chance; with few discordant cases no difference is distinguishable."""

    b: int  # the candidate agreed with the reviewer, the served version didn't
    c: int  # the served version agreed, the candidate didn't

    @property
    def p_value(self) -> float:
        """Exact two-sided McNemar p (a binomial test of b against b + c at one half)."""
        n = self.b + self.c
        if n == 0:
            return 1.0
        tail = sum(math.comb(n, k) for k in range(min(self.b, self.c) + 1)) / 2**n
        return min(1.0, 2 * tail)


@dataclass(frozen=True)
class Comparison:
    measure: Measure
    candidate: Evaluated
    served: Evaluated
    cases: int = 0  # reviewed cases both versions answered (agreement only)
    paired: Paired | None = None  # where they differ (agreement only)
    why_fallback: str = ""  # why reviewed cases weren't used, when they weren't

    @property
    def basis(self) -> str:
        if self.measure is Measure.AGREEMENT:
            return f"agreement with reviewers on the same {self.cases} reviewed cases"
        return f"F1 from Rekognition's evaluation ({IN_DISTRIBUTION}: its own test split)"

    @property
    def comparable(self) -> bool:
        return self.candidate.value is not None and self.served.value is not None

    @property
    def worse(self) -> bool:
        """Strictly worse by the point estimate of the measure used."""
        return self.comparable and self.candidate.value < self.served.value  # type: ignore[operator]

    @property
    def confirmations_needed(self) -> int:
        return 2 if self.worse else 1


def on_reviews(
    candidate: str,
    served: str,
    candidate_agreement: Proportion,
    served_agreement: Proportion,
    paired: Paired | None = None,
) -> Comparison:
    if candidate_agreement.n != served_agreement.n:
        raise ValueError("both versions must answer the same reviewed cases")
    if paired is not None and paired.b - paired.c != candidate_agreement.k - served_agreement.k:
        raise ValueError("the discordant cases don't match the two agreements")
    return Comparison(
        Measure.AGREEMENT,
        Evaluated(candidate, candidate_agreement.value, candidate_agreement),
        Evaluated(served, served_agreement.value, served_agreement),
        cases=candidate_agreement.n,
        paired=paired,
    )


def on_evaluation(
    candidate: str,
    candidate_f1: float | None,
    candidate_labels: tuple[LabelMetrics, ...],
    served: str,
    served_f1: float | None,
    served_labels: tuple[LabelMetrics, ...] = (),
    *,
    why_fallback: str = "",
) -> Comparison:
    return Comparison(
        Measure.F1,
        Evaluated(candidate, candidate_f1, labels=candidate_labels),
        Evaluated(served, served_f1, labels=served_labels),
        why_fallback=why_fallback,
    )
