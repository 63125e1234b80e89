"""Both models on every image: the router's answer (Rekognition when it runs), and the local
model's beside it, so that a disagreement is shown rather than hidden behind one answer."""

from __future__ import annotations

import logging
from dataclasses import replace

from PIL import Image

from bot.core.labels import ModelInfo, Prediction
from bot.core.model_answer import read_answer
from bot.core.routing import ModelRouter

log = logging.getLogger(__name__)


class BothModels:
    """A `Classifier`. When Rekognition answered, the local model answers too (as `second`);
    when the local model already answered alone (Rekognition not running), one answer it is.
    The local answer passes the same answer contract as the router's (`read_answer`); a
    failing local model never costs the image its Rekognition verdict."""

    def __init__(self, router: ModelRouter) -> None:
        self.router = router

    @property
    def model(self) -> ModelInfo:
        return self.router.model

    @property
    def max_side(self) -> int:
        local = self.router.local
        return max(self.router.max_side, local.max_side if local is not None else 0)

    async def classify(self, image: Image.Image) -> Prediction:
        first = await self.router.classify(image)
        local = self.router.local
        if local is None or first.model.kind == local.model.kind:
            return first
        try:
            second = read_answer(await local.classify(image), self.router.tolerance)
        except Exception as exc:
            log.warning("both_models.local_failed", extra={"error": type(exc).__name__})
            return first
        return replace(first, second=replace(second, heatmap_png=None))
