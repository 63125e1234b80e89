"""Temperature scaling and the decision threshold, on pneumonia logits (numpy only).

The network outputs one logit z for pneumonia. The model card holds a decision offset `b`
(a logit: pneumonia when z >= b) and a temperature `T`; the calibrated probability is

    P(pneumonia) = sigmoid((z - b) / T)

so that 0.5 is exactly the decision threshold (the top label is the model's decision), and `T`
is fitted on the validation split by minimising the negative log-likelihood.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def sigmoid(z: Any) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


def logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


def calibrated_probability(logits: Any, temperature: float = 1.0, offset: float = 0.0):
    """P(pneumonia) from raw logits, the decision offset and the temperature."""
    return sigmoid((np.asarray(logits, dtype=np.float64) - offset) / temperature)


def nll(logits: Any, labels: Any, temperature: float = 1.0, offset: float = 0.0) -> float:
    """Mean binary negative log-likelihood of the calibrated probabilities."""
    s = (np.asarray(logits, dtype=np.float64) - offset) / temperature
    y = np.asarray(labels, dtype=np.float64)
    # -[y log sigmoid(s) + (1-y) log sigmoid(-s)], computed stably
    return float(np.mean(y * np.logaddexp(0.0, -s) + (1 - y) * np.logaddexp(0.0, s)))


def fit_temperature(
    logits: Any, labels: Any, offset: float = 0.0, bounds: tuple[float, float] = (0.05, 20.0)
) -> float:
    """The temperature minimising the NLL (golden-section search on log T; NLL is unimodal)."""
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    ratio = (math.sqrt(5) - 1) / 2

    def loss(log_t: float) -> float:
        return nll(logits, labels, math.exp(log_t), offset)

    a, b = lo, hi
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = loss(c), loss(d)
    for _ in range(80):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = loss(d)
    return float(math.exp((a + b) / 2))


def youden_threshold(logits: Any, labels: Any, tolerance: float = 0.01) -> float:
    """The logit threshold maximising sensitivity + specificity - 1 (Youden's J) on these
    scores, as the midpoint between the two scores around the cut.

    Among the cuts within `tolerance` of the best J, the highest wins: the more specific one.
    Pneumonia models tend to over-call pneumonia on new data (this dataset's own test split
    shows it), so near-ties are broken against that error rather than towards it.
    """
    z = np.asarray(logits, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if y.all() or not y.any():
        return 0.0
    values = np.unique(z)
    cuts = np.r_[values[0] - 1.0, (values[1:] + values[:-1]) / 2, values[-1] + 1.0]
    sens = 1.0 - np.searchsorted(np.sort(z[y]), cuts, side="left") / y.sum()
    spec = np.searchsorted(np.sort(z[~y]), cuts, side="left") / (~y).sum()
    j = sens + spec - 1.0
    return float(cuts[np.flatnonzero(j >= j.max() - tolerance - 1e-12)[-1]])
