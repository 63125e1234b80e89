"""The Rekognition Custom Labels project on boto3: `ModelCatalog` (describe, start and stop
its versions) and `TrainingBackend` (datasets, the split, training, evaluation).

The SDK can't build a dataset from S3 folders, so the lifecycle writes a Ground Truth manifest
and `RekognitionTraining` creates the project's TRAIN dataset from it and an empty TEST
dataset, which `DistributeDatasetEntries` fills with 20% of the training images;
`CreateProjectVersion` then trains on them. Evaluation metrics per label come from the
training results summary file in S3 (`EvaluationResult.Summary`). boto3 blocks, so every call
runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bot.core.fleet.arns import dataset_type, project_name, version_name
from bot.core.fleet.training import DatasetInfo, Evaluation
from bot.core.model_versions import LabelMetrics, ModelVersion
from bot.core.training_data import ImageStore

METRICS = {"precision": "Precision", "recall": "Recall", "f1": "F1Score"}  # LabelMetrics' fields


class RekognitionModels:
    def __init__(self, client: Any, project_arn: str) -> None:
        self.client = client
        self.project_arn = project_arn

    async def versions(self) -> list[ModelVersion]:
        return await asyncio.to_thread(self._versions)

    def _versions(self) -> list[ModelVersion]:
        pages = self.client.get_paginator("describe_project_versions")
        return [
            to_model_version(description)
            for page in pages.paginate(ProjectArn=self.project_arn)
            for description in page.get("ProjectVersionDescriptions", [])
        ]

    async def start(self, version_arn: str, min_units: int, max_units: int | None) -> str:
        params: dict[str, Any] = {"ProjectVersionArn": version_arn, "MinInferenceUnits": min_units}
        if max_units is not None:
            params["MaxInferenceUnits"] = max_units
        response = await asyncio.to_thread(self.client.start_project_version, **params)
        return response["Status"]

    async def stop(self, version_arn: str) -> str:
        stop = self.client.stop_project_version
        return (await asyncio.to_thread(stop, ProjectVersionArn=version_arn))["Status"]


def to_model_version(description: dict[str, Any]) -> ModelVersion:
    arn = description["ProjectVersionArn"]
    evaluation = description.get("EvaluationResult") or {}
    summary = (evaluation.get("Summary") or {}).get("S3Object") or {}
    return ModelVersion(
        arn=arn,
        name=version_name(arn),
        status=description.get("Status", "UNKNOWN"),
        status_message=description.get("StatusMessage", ""),
        created=description.get("CreationTimestamp"),
        min_units=description.get("MinInferenceUnits"),
        max_units=description.get("MaxInferenceUnits"),
        f1=evaluation.get("F1Score"),
        billable_training_seconds=description.get("BillableTrainingTimeInSeconds"),
        evaluation_summary_s3=(summary["Bucket"], summary["Name"])
        if summary.get("Bucket")
        else None,
    )


def to_dataset(arn: str, kind: str, description: dict[str, Any]) -> DatasetInfo:
    stats = description.get("DatasetStats") or {}
    return DatasetInfo(
        arn,
        kind,
        status=description.get("Status", ""),
        status_message=description.get("StatusMessage", ""),
        total=stats.get("TotalEntries"),
        labelled=stats.get("LabeledEntries"),
        errors=stats.get("ErrorEntries"),
    )


class RekognitionTraining:
    def __init__(self, client: Any, project_arn: str, images: ImageStore) -> None:
        self.client = client
        self.project_arn = project_arn
        self.images = images

    async def project_datasets(self) -> list[DatasetInfo]:
        response = await asyncio.to_thread(
            self.client.describe_projects, ProjectNames=[project_name(self.project_arn)]
        )
        for project in response.get("ProjectDescriptions", []):
            if project.get("ProjectArn") == self.project_arn:
                datasets = project.get("Datasets", [])
                return [to_dataset(d["DatasetArn"], d.get("DatasetType", ""), d) for d in datasets]
        return []

    async def describe_dataset(self, arn: str) -> DatasetInfo:
        response = await asyncio.to_thread(self.client.describe_dataset, DatasetArn=arn)
        return to_dataset(arn, dataset_type(arn), response["DatasetDescription"])

    async def create_dataset(self, dataset_type: str, manifest: tuple[str, str] | None) -> str:
        params: dict[str, Any] = {"ProjectArn": self.project_arn, "DatasetType": dataset_type}
        if manifest is not None:
            bucket, key = manifest
            params["DatasetSource"] = {
                "GroundTruthManifest": {"S3Object": {"Bucket": bucket, "Name": key}}
            }
        response = await asyncio.to_thread(self.client.create_dataset, **params)
        return response["DatasetArn"]

    async def delete_dataset(self, arn: str) -> None:
        await asyncio.to_thread(self.client.delete_dataset, DatasetArn=arn)

    async def distribute(self, train_arn: str, test_arn: str) -> None:
        datasets = [{"Arn": train_arn}, {"Arn": test_arn}]
        await asyncio.to_thread(self.client.distribute_dataset_entries, Datasets=datasets)

    async def create_version(self, name: str, output_bucket: str, output_prefix: str) -> str:
        response = await asyncio.to_thread(
            self.client.create_project_version,
            ProjectArn=self.project_arn,
            VersionName=name,
            OutputConfig={"S3Bucket": output_bucket, "S3KeyPrefix": output_prefix},
            VersionDescription="Trained by cxr-bot (/cxr train)",
        )
        return response["ProjectVersionArn"]

    async def evaluation(self, summary: tuple[str, str]) -> Evaluation:
        bucket, key = summary
        return parse_summary(await self.images.get_json(bucket, key))


def parse_summary(summary: Any) -> Evaluation:
    """The training results summary file (EvaluationSummary-<project>-<version>.json).

    AWS documents the aggregate metrics under `AggregatedEvaluationResults.Metrics`, and its
    example puts them straight under `AggregatedEvaluationResults`; both are read.
    """
    if not isinstance(summary, dict):
        return Evaluation()
    aggregated = summary.get("AggregatedEvaluationResults") or {}
    metrics = aggregated.get("Metrics") if isinstance(aggregated.get("Metrics"), dict) else None
    overall = metrics or aggregated
    details = summary.get("EvaluationDetails") or {}
    labels = [
        LabelMetrics(str(item.get("Label", "?")), **_numbers(item.get("Metrics") or {}))
        for item in summary.get("LabelEvaluationResults") or []
    ]
    return Evaluation(
        f1=_numbers(overall)["f1"],
        labels=tuple(sorted(labels, key=lambda m: m.label.casefold())),
        train_images=_integer(details.get("NumberOfTrainingImages")),
        test_images=_integer(details.get("NumberOfTestingImages")),
    )


def _numbers(metrics: dict[str, Any]) -> dict[str, float | None]:
    return {field: _number(metrics.get(name)) for field, name in METRICS.items()}


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _integer(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)
