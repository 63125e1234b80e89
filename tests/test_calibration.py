"""Temperature scaling and the decision threshold."""

import numpy as np
import pytest

from bot.ml.calibration import (
    calibrated_probability,
    fit_temperature,
    logit,
    nll,
    sigmoid,
    youden_threshold,
)
from bot.ml.metrics import expected_calibration_error


def overconfident(seed=0, n=20_000, factor=3.0):
    """Labels drawn from true logits; the "model" reports them `factor` times too large."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0.0, 2.0, n)
    labels = rng.random(n) < sigmoid(true_logits)
    return true_logits * factor, labels


def test_sigmoid_and_logit_are_stable_and_inverse():
    assert sigmoid(np.array([-1000.0, 0.0, 1000.0])).tolist() == [0.0, 0.5, 1.0]
    assert sigmoid(logit(0.8)) == pytest.approx(0.8)


def test_fit_temperature_recovers_the_overconfidence():
    logits, labels = overconfident()
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(3.0, rel=0.08)
    assert nll(logits, labels, t) < nll(logits, labels, 1.0)


def test_temperature_scaling_reduces_ece():
    logits, labels = overconfident(seed=1)
    t = fit_temperature(logits, labels)
    before = expected_calibration_error(labels, sigmoid(logits))
    after = expected_calibration_error(labels, calibrated_probability(logits, t))
    assert after < before / 3


def test_calibrated_probability_is_one_half_at_the_decision_threshold():
    assert calibrated_probability(np.array([-1.2]), 2.0, -1.2)[0] == pytest.approx(0.5)
    p = calibrated_probability(np.array([-2.0, -1.0, 3.0]), 1.5, -1.2)
    assert (p >= 0.5).tolist() == [False, True, True]


def test_youden_threshold_separates_separable_scores_and_prefers_the_specific_cut():
    logits = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert youden_threshold(logits, labels) == pytest.approx(0.0)
    # Normals at -1 and 0.5, pneumonias at 0 and 2: cutting at -0.5 (J = 1 + 0.5 - 1) and at
    # 1.25 (J = 0.5 + 1 - 1) are equally good; the higher, more specific one wins.
    logits = np.array([-1.0, 0.5, 0.0, 2.0])
    labels = np.array([0, 0, 1, 1])
    assert youden_threshold(logits, labels, tolerance=0.0) == pytest.approx(1.25)


def test_youden_threshold_with_one_class_is_zero():
    assert youden_threshold(np.array([1.0, 2.0]), np.array([1, 1])) == 0.0
