"""What the lifecycle needs from outside the core, and how it is configured.

Rekognition's datasets and training sit behind `TrainingBackend` (the adapter:
`bot.adapters.rekognition_training`), the model the bot answers with behind `Serving`. Both are
Protocols so the core imports neither boto3 nor the router's classifiers; `RouterServing` is the
one `Serving` the bot uses, kept here because it only pokes the `ModelRouter` it is given.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bot.core.fleet.arns import project_name
from bot.core.labels import ModelInfo
from bot.core.model_versions import LabelMetrics
from bot.core.training_data import S3Uri

log = logging.getLogger(__package__)  # one logger for the package: bot.core.lifecycle


@dataclass(frozen=True)
class DatasetInfo:
    arn: str
    type: str  # TRAIN | TEST
    status: str
    status_message: str = ""
    total: int | None = None
    labelled: int | None = None
    errors: int | None = None


@dataclass(frozen=True)
class Evaluation:
    """The training results summary file: overall and per-label metrics."""

    f1: float | None = None
    precision: float | None = None
    recall: float | None = None
    labels: tuple[LabelMetrics, ...] = ()
    train_images: int | None = None
    test_images: int | None = None


class TrainingBackend(Protocol):
    """Rekognition's datasets and training (the adapter: `bot.adapters.rekognition_training`)."""

    async def project_datasets(self) -> list[DatasetInfo]: ...

    async def describe_dataset(self, arn: str) -> DatasetInfo: ...

    async def create_dataset(self, dataset_type: str, manifest: tuple[str, str] | None) -> str:
        """Create the TRAIN (from a manifest: (bucket, key)) or an empty TEST dataset."""
        ...

    async def delete_dataset(self, arn: str) -> None: ...

    async def distribute(self, train_arn: str, test_arn: str) -> None: ...

    async def create_version(self, name: str, output_bucket: str, output_prefix: str) -> str: ...

    async def evaluation(self, summary: tuple[str, str]) -> Evaluation: ...


class Serving(Protocol):
    """Which model the bot answers with; the lifecycle switches it when a version runs."""

    def current(self) -> ModelInfo: ...

    def version_arn(self) -> str | None: ...

    def has_fallback(self) -> bool:
        """Whether the local model answers while the Rekognition version isn't running."""
        ...

    def serve(self, version_arn: str) -> None: ...

    def stopped(self, version_arn: str) -> None: ...


class RouterServing:
    """`Serving` on the `ModelRouter`: the primary becomes a classifier on the running version."""

    def __init__(self, router: Any, make_primary: Callable[[str], Any]) -> None:
        self.router = router
        self.make_primary = make_primary

    def current(self) -> ModelInfo:
        return self.router.model

    def version_arn(self) -> str | None:
        return getattr(self.router.primary, "version_arn", None)

    def has_fallback(self) -> bool:
        return bool(self.router.fallback)

    def serve(self, version_arn: str) -> None:
        primary = self.router.primary
        if primary is not None and hasattr(primary, "version_arn"):
            primary.version_arn = version_arn
        else:
            self.router.primary = self.make_primary(version_arn)
        self.router.set_primary_running(True)
        log.info("serving.switched", extra={"version_arn": version_arn})

    def stopped(self, version_arn: str) -> None:
        if self.version_arn() == version_arn:
            self.router.set_primary_running(False)


@dataclass(frozen=True)
class LifecycleConfig:
    project_arn: str | None = None
    region: str | None = None
    output: S3Uri | None = None  # where manifests go and training writes its output
    poll_seconds: float = 30.0
    max_units: int = 10
    ops_channel: str | None = None
    min_images_per_label: int = 10
    serve_running_on_start: bool = False  # project set without a version: serve what runs

    @property
    def project_name(self) -> str:
        if not self.project_arn:
            return ""
        return project_name(self.project_arn)
