"""`ModelCatalog` on Rekognition: describe, start and stop a project's model versions.

boto3 blocks, so every call runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bot.adapters.rekognition import parse_version_arn
from bot.core.model_versions import ModelVersion


class RekognitionModels:
    def __init__(self, client: Any, project_arn: str) -> None:
        self.client = client
        self.project_arn = project_arn

    async def versions(self) -> list[ModelVersion]:
        return await asyncio.to_thread(self._versions)

    def _versions(self) -> list[ModelVersion]:
        paginator = self.client.get_paginator("describe_project_versions")
        found = []
        for page in paginator.paginate(ProjectArn=self.project_arn):
            found.extend(to_model_version(d) for d in page.get("ProjectVersionDescriptions", []))
        return found

    async def start(self, version_arn: str, min_units: int, max_units: int | None) -> str:
        params: dict[str, Any] = {"ProjectVersionArn": version_arn, "MinInferenceUnits": min_units}
        if max_units is not None:
            params["MaxInferenceUnits"] = max_units
        response = await asyncio.to_thread(self.client.start_project_version, **params)
        return response["Status"]

    async def stop(self, version_arn: str) -> str:
        response = await asyncio.to_thread(
            self.client.stop_project_version, ProjectVersionArn=version_arn
        )
        return response["Status"]


def to_model_version(description: dict[str, Any]) -> ModelVersion:
    arn = description["ProjectVersionArn"]
    evaluation = description.get("EvaluationResult") or {}
    summary = (evaluation.get("Summary") or {}).get("S3Object") or {}
    return ModelVersion(
        arn=arn,
        name=parse_version_arn(arn)[1],
        status=description.get("Status", "UNKNOWN"),
        status_message=description.get("StatusMessage", ""),
        created=description.get("CreationTimestamp"),
        training_ended=description.get("TrainingEndTimestamp"),
        min_units=description.get("MinInferenceUnits"),
        max_units=description.get("MaxInferenceUnits"),
        f1=evaluation.get("F1Score"),
        billable_training_seconds=description.get("BillableTrainingTimeInSeconds"),
        evaluation_summary_s3=(summary["Bucket"], summary["Name"])
        if summary.get("Bucket")
        else None,
    )
