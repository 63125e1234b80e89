"""Rekognition Custom Labels model versions as the domain sees them (no boto3 here)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

# ProjectVersionStatus values (botocore's service model); DEPRECATED and EXPIRED exist too.
TRAINING_IN_PROGRESS = "TRAINING_IN_PROGRESS"
TRAINING_COMPLETED = "TRAINING_COMPLETED"
TRAINING_FAILED = "TRAINING_FAILED"
STARTING = "STARTING"
RUNNING = "RUNNING"
FAILED = "FAILED"
STOPPING = "STOPPING"
STOPPED = "STOPPED"
DELETING = "DELETING"


@dataclass(frozen=True)
class LabelMetrics:
    label: str
    precision: float | None
    recall: float | None
    f1: float | None = None


@dataclass(frozen=True)
class ModelVersion:
    arn: str
    name: str
    status: str
    status_message: str = ""
    created: datetime | None = None
    min_units: int | None = None
    max_units: int | None = None
    f1: float | None = None
    billable_training_seconds: int | None = None
    evaluation_summary_s3: tuple[str, str] | None = None  # (bucket, key) of the summary JSON

    @property
    def running(self) -> bool:
        return self.status == RUNNING


class ModelCatalog(Protocol):
    """The project's model versions and their running state (Rekognition, or a fake)."""

    async def versions(self) -> list[ModelVersion]: ...

    async def start(self, version_arn: str, min_units: int, max_units: int | None) -> str:
        """Ask for the version to run; returns the new status (STARTING)."""
        ...

    async def stop(self, version_arn: str) -> str:
        """Ask for the version to stop; returns the new status (STOPPING)."""
        ...


def find_version(versions: Iterable[ModelVersion], wanted: str | None) -> ModelVersion | None:
    """The version called `wanted` (its name or its ARN); None when there is none."""
    if not wanted:
        return None
    return next((v for v in versions if wanted in (v.name, v.arn)), None)
