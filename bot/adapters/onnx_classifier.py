"""The local model behind the `Classifier` port: the bundled ONNX CNN run by onnxruntime.

No AWS account and no GPU needed: the bot's default classifier, and its fallback while the
Rekognition model is stopped. Scores are calibrated with the model card's decision offset and
temperature, so the top label is the model's decision and its probability means what it says.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from PIL import Image

from bot.core.errors import ClassifierUnavailable
from bot.core.labels import Label, ModelInfo, Prediction
from bot.ml.calibration import calibrated_probability
from bot.ml.heatmap import MAX_SIDE as HEATMAP_MAX_SIDE
from bot.ml.heatmap import heatmap_png
from bot.ml.model_card import MODEL_DIR, ModelCard, load_model_card, sha256_of
from bot.ml.preprocess import INPUT_SIZE, MAX_SIDE, preprocess

DEFAULT_MODEL = MODEL_DIR / load_model_card(MODEL_DIR).file


class OnnxClassifier:
    """`Classifier` for an exported cxr-cnn ONNX file and the model card beside it."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        heatmaps: bool = True,
        heatmap_normal: bool = False,
        threads: int = 1,
    ):
        import onnxruntime as ort

        self.path = Path(path) if path is not None else DEFAULT_MODEL
        if not self.path.is_file():
            raise FileNotFoundError(f"local model not found: {self.path}")
        self.card: ModelCard = load_model_card(self.path.parent)
        if self.card.file != self.path.name or self.card.sha256 != sha256_of(self.path):
            raise ValueError(
                f"{self.path} does not match its model card ({self.card.file}, sha256 "
                f"{self.card.sha256[:12]}…); re-export the model and its card together"
            )
        if self.card.input_size != INPUT_SIZE:
            raise ValueError(f"model card input size {self.card.input_size} != {INPUT_SIZE}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        self._outputs = [output.name for output in self._session.get_outputs()]
        self._cache_key = f"cxr-bot.outputs.{self.card.sha256}"
        self.heatmaps = heatmaps
        self.heatmap_normal = heatmap_normal
        self._info = ModelInfo(kind="local", name=self.card.name, version=self.card.version)

    @classmethod
    def bundled(
        cls, *, heatmaps: bool = True, heatmap_normal: bool = False, threads: int = 1
    ) -> OnnxClassifier:
        """The model shipped in the package (`bot/model/`)."""
        return cls(DEFAULT_MODEL, heatmaps=heatmaps, heatmap_normal=heatmap_normal, threads=threads)

    @property
    def model(self) -> ModelInfo:
        return self._info

    @property
    def max_side(self) -> int:
        """Decode size: enough for the model, or for a readable heatmap when it draws them."""
        return HEATMAP_MAX_SIDE if self.heatmaps else MAX_SIDE

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw (logits (N,), cams (N, 14, 14)) for preprocessed images (N, 1, 224, 224)."""
        logit, cam = self._session.run(["logit", "cam"], {self._input: batch})
        return logit, cam

    def outputs(self, image: Image.Image) -> dict[str, np.ndarray]:
        """Every output of the model for one decoded image, computed once per image: they are
        kept on the image (under this model's hash), so the learned guard and the classifier
        share one run."""
        cached = self._cached(image)
        if cached is None:
            names = self._outputs
            values = self._session.run(
                names, {self._input: preprocess(image, equalized=self.card.equalized)}
            )
            cached = dict(zip(names, values, strict=True))
            image.info[self._cache_key] = (id(image), cached)
        return cached

    def _cached(self, image: Image.Image) -> dict[str, np.ndarray] | None:
        owner, cached = image.info.get(self._cache_key, (None, None))
        return cached if owner == id(image) else None  # PIL copies `info` to derived images

    def probability(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated P(pneumonia); 0.5 is the model's decision threshold."""
        return calibrated_probability(logits, self.card.temperature, self.card.threshold_logit)

    def predict(self, image: Image.Image, *, heatmap: bool | None = None) -> Prediction:
        """Synchronous `classify` (the CLI and benchmarks use it)."""
        try:
            found = self._cached(image)  # the learned guard's run, if it made one
            if found is not None:
                logits, cams = found["logit"], found["cam"]
            else:
                logits, cams = self.infer(preprocess(image, equalized=self.card.equalized))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ClassifierUnavailable(
                "The local model failed on this image. Please try again.", detail=repr(exc)
            ) from exc
        p = float(self.probability(logits)[0])
        png = None
        offset = self.card.threshold_logit
        if self.heatmaps if heatmap is None else heatmap:
            # Evidence for the leaning label, as strong as the verdict; Normal only on request.
            if p >= 0.5:
                png = heatmap_png(image, cams[0], label="Pneumonia", p_class=p, offset=offset)
            elif self.heatmap_normal:
                png = heatmap_png(image, -cams[0], label="Normal", p_class=1 - p, offset=-offset)
        return Prediction(
            scores={Label.NORMAL: 1.0 - p, Label.PNEUMONIA: p}, model=self._info, heatmap_png=png
        )

    async def classify(self, image: Image.Image) -> Prediction:
        # onnxruntime releases the GIL: run it in a worker thread, off the event loop.
        return await asyncio.to_thread(self.predict, image)
