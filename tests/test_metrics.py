"""Screening metrics against figures worked out by hand."""

import math

import numpy as np
import pytest

from bot.ml.metrics import (
    ConfusionMatrix,
    confusion,
    expected_calibration_error,
    roc_auc,
    roc_curve,
    summarize,
)

# 10 images: 6 pneumonia (1), 4 normal (0).
TRUTH = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
PRED = [1, 1, 1, 1, 0, 0, 1, 0, 0, 0]
# By hand: TP = 4, FN = 2, FP = 1, TN = 3.


def test_confusion_matrix_by_hand():
    m = confusion(TRUTH, PRED)
    assert m == ConfusionMatrix(tn=3, fp=1, fn=2, tp=4)
    assert m.as_rows() == [[3, 1], [2, 4]]
    assert m.total == 10
    assert m.accuracy == pytest.approx(7 / 10)
    assert m.sensitivity == pytest.approx(4 / 6)
    assert m.specificity == pytest.approx(3 / 4)
    assert m.precision == pytest.approx(4 / 5)
    # F1 = 2PR / (P + R) = 2 * 0.8 * 0.6667 / 1.4667 = 8 / 11
    assert m.f1 == pytest.approx(8 / 11)


def test_empty_classes_give_zero_not_an_error():
    m = confusion([0, 0], [0, 0])
    assert m.sensitivity == 0.0 and m.precision == 0.0 and m.f1 == 0.0
    assert m.specificity == 1.0


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError):
        confusion([0, 1], [1])


def test_roc_auc_by_hand_with_a_tie():
    # Positives score 0.9, 0.6, 0.4; negatives 0.6, 0.2.
    # Pairs (pos > neg): 0.9 beats both (2), 0.6 ties 0.6 (0.5) and beats 0.2 (1),
    # 0.4 beats 0.2 (1): 4.5 of 6.
    truth = [1, 1, 1, 0, 0]
    scores = [0.9, 0.6, 0.4, 0.6, 0.2]
    assert roc_auc(truth, scores) == pytest.approx(4.5 / 6)
    fpr, tpr, thresholds = roc_curve(truth, scores)
    assert fpr.tolist() == pytest.approx([0, 0, 0.5, 0.5, 1])
    assert tpr.tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1, 1])
    assert thresholds[0] == math.inf and thresholds.tolist()[1:] == [0.9, 0.6, 0.4, 0.2]


def test_roc_auc_extremes():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert math.isnan(roc_auc([1, 1], [0.3, 0.4]))


def test_ece_by_hand():
    # Two bins used. Confidence 0.9 (p = 0.9 or 0.1): 4 images, 3 right -> |0.75 - 0.9| = 0.15.
    # Confidence 0.6 (p = 0.6): 2 images, both right -> |1.0 - 0.6| = 0.4.
    # ECE = 4/6 * 0.15 + 2/6 * 0.4 = 0.1 + 0.1333 = 0.2333
    truth = [1, 1, 0, 1, 1, 1]
    p = [0.9, 0.9, 0.1, 0.1, 0.6, 0.6]
    assert expected_calibration_error(truth, p) == pytest.approx(0.1 + 0.4 / 3)


def test_ece_is_zero_for_a_perfectly_calibrated_model():
    rng = np.random.default_rng(0)
    p = rng.choice([0.2, 0.7, 0.95], size=200_000)
    truth = rng.random(p.size) < p
    assert expected_calibration_error(truth, p) < 0.005


def test_summarize_uses_the_threshold():
    p = [0.9, 0.8, 0.7, 0.6, 0.45, 0.3, 0.55, 0.2, 0.1, 0.4]
    report = summarize(TRUTH, p, threshold=0.5)
    assert report["confusion_matrix"] == [[3, 1], [2, 4]]
    assert report["accuracy"] == pytest.approx(0.7)
    assert report["n"] == 10
    assert set(report) >= {"sensitivity", "specificity", "precision", "f1", "auc", "ece"}
