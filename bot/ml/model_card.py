"""The bundled model's card: what the bot needs from `model_card.json`, and the rest as-is."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODEL_DIR = Path(__file__).resolve().parent.parent / "model"
CARD_FILE = "model_card.json"


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str
    file: str
    sha256: str
    input_size: int
    threshold_logit: float  # pneumonia when the logit is at least this
    temperature: float  # calibrated P(pneumonia) = sigmoid((logit - threshold_logit) / T)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def equalized(self) -> bool:
        """The model was trained on histogram-equalised images."""
        return bool(self.raw.get("input", {}).get("equalize", False))

    @property
    def metrics(self) -> dict[str, Any]:
        return self.raw.get("metrics", {}).get("validation", {})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        try:
            return cls(
                name=str(data["name"]),
                version=str(data["version"]),
                file=str(data["file"]),
                sha256=str(data["sha256"]),
                input_size=int(data["input"]["size"]),
                threshold_logit=float(data["threshold"]["logit"]),
                temperature=float(data["calibration"]["temperature"]),
                raw=data,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"model card is missing or has a bad field: {exc}") from None


def load_model_card(path: Path | None = None) -> ModelCard:
    """Read a card: `path` is the JSON file or the folder holding it; default the bundled one."""
    path = Path(path) if path is not None else MODEL_DIR
    if path.is_dir():
        path = path / CARD_FILE
    return ModelCard.from_dict(json.loads(path.read_text(encoding="utf-8")))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
