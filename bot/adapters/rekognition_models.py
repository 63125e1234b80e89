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

from bot.adapters.rekognition import parse_version_arn
from bot.core.fleet.arns import dataset_type, project_name
from bot.core.fleet.training import DatasetInfo, Evaluation
from bot.core.model_versions import LabelMetrics, ModelVersion
from bot.core.training_data import ImageStore


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
                return [
                    DatasetInfo(
                        arn=d["DatasetArn"],
                        type=d.get("DatasetType", ""),
                        status=d.get("Status", ""),
                        status_message=d.get("StatusMessage", ""),
                    )
                    for d in project.get("Datasets", [])
                ]
        return []

    async def describe_dataset(self, arn: str) -> DatasetInfo:
        response = await asyncio.to_thread(self.client.describe_dataset, DatasetArn=arn)
        description = response["DatasetDescription"]
        stats = description.get("DatasetStats") or {}
        return DatasetInfo(
            arn=arn,
            type=dataset_type(arn),
            status=description.get("Status", ""),
            status_message=description.get("StatusMessage", ""),
            total=stats.get("TotalEntries"),
            labelled=stats.get("LabeledEntries"),
            errors=stats.get("ErrorEntries"),
        )

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
        await asyncio.to_thread(
            self.client.distribute_dataset_entries,
            Datasets=[{"Arn": train_arn}, {"Arn": test_arn}],
        )

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
    labels = []
    for item in summary.get("LabelEvaluationResults") or []:
        values = item.get("Metrics") or {}
        labels.append(
            LabelMetrics(
                label=str(item.get("Label", "?")),
                precision=_number(values.get("Precision")),
                recall=_number(values.get("Recall")),
                f1=_number(values.get("F1Score")),
            )
        )
    labels.sort(key=lambda m: m.label.casefold())
    return Evaluation(
        f1=_number(overall.get("F1Score")),
        precision=_number(overall.get("Precision")),
        recall=_number(overall.get("Recall")),
        labels=tuple(labels),
        train_images=_integer(details.get("NumberOfTrainingImages")),
        test_images=_integer(details.get("NumberOfTestingImages")),
    )


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _integer(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)
