"""`TrainingBackend` on Rekognition Custom Labels: datasets, the split, training, evaluation.

The SDK can't build a dataset from S3 folders, so the lifecycle writes a Ground Truth manifest
and this adapter creates the project's TRAIN dataset from it and an empty TEST dataset, which
`DistributeDatasetEntries` fills with 20% of the training images. `CreateProjectVersion` then
trains on the project's datasets. Evaluation metrics per label come from the training results
summary file in S3 (`EvaluationResult.Summary`). boto3 blocks: calls run in worker threads.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bot.core.fleet.arns import dataset_type, project_name
from bot.core.fleet.training import DatasetInfo, Evaluation
from bot.core.model_versions import LabelMetrics
from bot.core.training_data import ImageStore


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
