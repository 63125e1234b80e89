"""Which classifier answers: Rekognition when configured and running, else the local model."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

from PIL import Image

from bot.core.clock import Clock
from bot.core.errors import ModelNotRunning
from bot.core.labels import ModelInfo, Prediction
from bot.core.model_answer import DEFAULT_TOLERANCE, read_answer
from bot.core.ports import Classifier

log = logging.getLogger(__name__)

RECHECK_AFTER = timedelta(minutes=1)


class ModelRouter:
    """A `Classifier` that routes to the primary (Rekognition) model or the local one.

    When the primary answers "not running" and fallback is on, the local model answers and
    the primary is skipped for a minute (or until the fleet poller says it runs again),
    so a stopped model costs one failed call a minute, not one per image.

    Every answer, from either model, passes `read_answer` here: the one place where a model's
    output is checked before it can become a verdict.
    """

    def __init__(
        self,
        primary: Classifier | None,
        local: Classifier | None,
        *,
        fallback: bool,
        clock: Clock,
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> None:
        if primary is None and local is None:
            raise ValueError("at least one classifier is needed")
        self.primary = primary
        self.local = local
        self.fallback = fallback and local is not None
        self._clock = clock
        self._primary_down_at = None
        self.tolerance = tolerance

    @property
    def model(self) -> ModelInfo:
        """The model that answers when all is well (what `/cxr status` calls "serving")."""
        return (self.primary or self.local).model  # type: ignore[union-attr]

    @property
    def max_side(self) -> int:
        return self._choice().max_side

    def set_primary_running(self, running: bool) -> None:
        """Told by the fleet poller: skip or retry the primary without waiting."""
        self._primary_down_at = None if running else self._clock.now()

    def _primary_skipped(self) -> bool:
        if self._primary_down_at is None or not self.fallback:
            return False
        return self._clock.now() - self._primary_down_at < RECHECK_AFTER

    def _choice(self) -> Classifier:
        if self.primary is not None and not self._primary_skipped():
            return self.primary
        return self.local  # type: ignore[return-value]

    async def classify(self, image: Image.Image) -> Prediction:
        if self.primary is not None and not self._primary_skipped():
            try:
                return read_answer(await self.primary.classify(image), self.tolerance)
            except ModelNotRunning:
                if not self.fallback:
                    raise
                log.info("router.primary_not_running", extra={"fallback": "local"})
                self._primary_down_at = self._clock.now()
        assert self.local is not None
        prediction = read_answer(await self.local.classify(image), self.tolerance)
        if self.primary is not None:
            note = (
                f"The Rekognition model ({self.primary.model.describe()}) isn't running, "
                "so the local model answered."
            )
            prediction = replace(prediction, note=note)
        return prediction
