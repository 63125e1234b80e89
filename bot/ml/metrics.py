"""Binary screening metrics, numpy only. The positive class is pneumonia (label 1).

`y_true` holds 0 (normal) or 1 (pneumonia); `scores` and `p_pneumonia` are the model's scores
for pneumonia (any monotone score for ROC, probabilities for calibration).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def _safe_div(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts at one decision threshold. Rows are the truth, columns the prediction."""

    tn: int
    fp: int
    fn: int
    tp: int

    @property
    def total(self) -> int:
        return self.tn + self.fp + self.fn + self.tp

    @property
    def accuracy(self) -> float:
        return _safe_div(self.tp + self.tn, self.total)

    @property
    def sensitivity(self) -> float:
        """Recall of pneumonia: TP / (TP + FN)."""
        return _safe_div(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float:
        """Recall of normal: TN / (TN + FP)."""
        return _safe_div(self.tn, self.tn + self.fp)

    @property
    def precision(self) -> float:
        """Positive predictive value: TP / (TP + FP)."""
        return _safe_div(self.tp, self.tp + self.fp)

    @property
    def f1(self) -> float:
        return _safe_div(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def as_rows(self) -> list[list[int]]:
        """[[TN, FP], [FN, TP]]: rows truth (normal, pneumonia), columns predicted."""
        return [[self.tn, self.fp], [self.fn, self.tp]]


def confusion(y_true: Any, y_pred: Any) -> ConfusionMatrix:
    truth = np.asarray(y_true).astype(bool).ravel()
    pred = np.asarray(y_pred).astype(bool).ravel()
    if truth.shape != pred.shape:
        raise ValueError(f"{truth.size} labels but {pred.size} predictions")
    return ConfusionMatrix(
        tn=int(np.sum(~truth & ~pred)),
        fp=int(np.sum(~truth & pred)),
        fn=int(np.sum(truth & ~pred)),
        tp=int(np.sum(truth & pred)),
    )


def roc_curve(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rates, true-positive rates and the thresholds (score >= t is positive),
    from (0, 0) at t = +inf to (1, 1); tied scores give one point."""
    truth = np.asarray(y_true).astype(bool).ravel()
    score = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(-score, kind="mergesort")
    score, truth = score[order], truth[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(score)), score.size - 1]
    tps = np.cumsum(truth)[last_of_run]
    fps = (last_of_run + 1) - tps
    positives, negatives = truth.sum(), (~truth).sum()
    tpr = np.r_[0.0, tps / positives if positives else np.zeros_like(tps, dtype=float)]
    fpr = np.r_[0.0, fps / negatives if negatives else np.zeros_like(fps, dtype=float)]
    thresholds = np.r_[np.inf, score[last_of_run]]
    return fpr, tpr, thresholds


def roc_auc(y_true: Any, scores: Any) -> float:
    """Area under the ROC curve (the Mann-Whitney statistic, ties counting one half)."""
    truth = np.asarray(y_true).astype(bool).ravel()
    if truth.all() or not truth.any():
        return float("nan")
    fpr, tpr, _ = roc_curve(truth, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def expected_calibration_error(y_true: Any, p_pneumonia: Any, bins: int = 15) -> float:
    """Top-label ECE: the confidence of the predicted label against its accuracy, in `bins`
    equal-width confidence bins (0.5..1), weighted by the bin's share of images."""
    truth = np.asarray(y_true).astype(bool).ravel()
    p = np.clip(np.asarray(p_pneumonia, dtype=np.float64).ravel(), 0.0, 1.0)
    if p.size == 0:
        return 0.0
    predicted = p >= 0.5
    confidence = np.where(predicted, p, 1.0 - p)
    correct = predicted == truth
    edges = np.linspace(0.5, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = index == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def summarize(y_true: Any, p_pneumonia: Any, threshold: float = 0.5) -> dict[str, Any]:
    """All the screening figures for pneumonia probabilities decided at `threshold`."""
    p = np.asarray(p_pneumonia, dtype=np.float64).ravel()
    matrix = confusion(y_true, p >= threshold)
    return {
        "n": matrix.total,
        "accuracy": matrix.accuracy,
        "sensitivity": matrix.sensitivity,
        "specificity": matrix.specificity,
        "precision": matrix.precision,
        "f1": matrix.f1,
        "auc": roc_auc(y_true, p),
        "ece": expected_calibration_error(y_true, p),
        "confusion_matrix": matrix.as_rows(),
        "threshold": threshold,
    }
