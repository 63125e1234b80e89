"""The contract every classifier answer must meet before it may become a verdict.

A model (Rekognition or local) must name exactly the two known labels, once each, with finite
scores in 0..1 that sum to 1 within a tolerance. Anything else (NaN, -20%, 150%, an unknown
label, one label only) is not guessed at: the user reads "no verdict" and the log gets an
error line naming the problem (never the image or its name).
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from numbers import Real

from bot.core.errors import UserFacingError
from bot.core.labels import Label, Prediction

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 0.02

UNREADABLE_REPLY = (
    "The model answered something I can't read, so there's no verdict for this image. "
    "It's been logged for the bot's admins; please don't rely on any result for it."
)


class UnreadableAnswer(UserFacingError):
    code = "unreadable_model_answer"


def answer_pairs(prediction: Prediction) -> tuple[tuple[str, object], ...]:
    """The answer as the model gave it: its own label names and scores (0..1)."""
    if prediction.answer:
        return prediction.answer
    return tuple((str(label), score) for label, score in prediction.scores.items())


def answer_problem(pairs: tuple[tuple[str, object], ...], tolerance: float) -> str | None:
    """What is wrong with an answer, or None when it meets the contract."""
    if len(pairs) != len(Label):
        return f"{len(pairs)} labels, expected {len(Label)}"
    labels = [Label.parse(name) if isinstance(name, str) else None for name, _ in pairs]
    if None in labels:
        return "an unknown label"
    if len(set(labels)) != len(Label):
        return "a label given twice"
    scores = [score for _, score in pairs]
    if not all(isinstance(s, Real) and not isinstance(s, bool) for s in scores):
        return "a score that isn't a number"
    values = [float(s) for s in scores]  # type: ignore[arg-type]
    if not all(math.isfinite(v) for v in values):
        return "a score that isn't finite"
    if not all(0.0 <= v <= 1.0 for v in values):
        return "a score out of range"
    if abs(sum(values) - 1.0) > tolerance:
        return f"scores summing to {sum(values) * 100:.1f}%"
    return None


def read_answer(prediction: Prediction, tolerance: float = DEFAULT_TOLERANCE) -> Prediction:
    """The prediction with clean scores for both labels, or `UnreadableAnswer`."""
    pairs = answer_pairs(prediction)
    problem = answer_problem(pairs, tolerance)
    if problem is not None:
        log.error(
            "classifier.unreadable_answer",
            extra={"model": prediction.model.describe(), "problem": problem},
        )
        raise UnreadableAnswer(UNREADABLE_REPLY, detail=problem)
    scores = {Label.parse(name): float(score) for name, score in pairs}  # type: ignore[arg-type]
    return replace(prediction, scores=scores, answer=())  # type: ignore[arg-type]
