"""Shared pieces for the lifecycle tests (no tests here): Rekognition answers for the Stubber,
an S3 folder tree of synthetic X-rays in moto, a recording outbox, a lifecycle built by hand."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.stub import ANY

from bot.adapters.rekognition_models import RekognitionModels, RekognitionTraining
from bot.adapters.s3_images import S3Images
from bot.core.clock import FakeClock
from bot.core.fleet.lifecycle import Lifecycle, LifecycleConfig, RouterServing
from bot.core.labels import ModelInfo, Prediction
from bot.core.ports import Notice, PostedMessage
from bot.core.pricing import Prices
from bot.core.routing import ModelRouter
from bot.core.training_data import S3Uri
from bot.state.db import Database
from bot.state.store import AuditLog, OperationStore, RunStore, SqliteStore
from tests.harness import PROJECT_ARN, open_database
from tests.synthetic import chest_xray, jpeg_bytes, png_bytes

REGION = "us-east-1"
DATA_BUCKET = "cxr-data"
OUTPUT_BUCKET = "cxr-out"
FOREIGN_BUCKET = "cxr-data-eu"
OUTPUT = f"s3://{OUTPUT_BUCKET}/bot"
POLL = 30.0
PROJECT_ACCOUNT = "arn:aws:rekognition:us-east-1:123456789012"
TRAIN_DATASET = f"{PROJECT_ACCOUNT}:project/cxr/dataset/train/1700000000100"
TEST_DATASET = f"{PROJECT_ACCOUNT}:project/cxr/dataset/test/1700000000101"
CREATED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def arn(name: str, ts: str = "1700000000001") -> str:
    return f"{PROJECT_ACCOUNT}:project/cxr/version/{name}/{ts}"


def version(name: str, status: str, **extra: Any) -> dict[str, Any]:
    """One ProjectVersionDescription, as DescribeProjectVersions returns it."""
    return {
        "ProjectVersionArn": arn(name),
        "Status": status,
        "StatusMessage": extra.pop("message", f"The model is {status.lower()}."),
        "CreationTimestamp": extra.pop("created", CREATED),
        **extra,
    }


def expect_versions(rekognition: Any, *descriptions: dict[str, Any]) -> None:
    rekognition.stubber.add_response(
        "describe_project_versions",
        {"ProjectVersionDescriptions": list(descriptions)},
        {"ProjectArn": PROJECT_ARN},
    )


def expect_project(rekognition: Any, *datasets: tuple[str, str, str]) -> None:
    """DescribeProjects for the project, with (arn, type, status) datasets."""
    rekognition.stubber.add_response(
        "describe_projects",
        {
            "ProjectDescriptions": [
                {
                    "ProjectArn": PROJECT_ARN,
                    "Status": "CREATED",
                    "Datasets": [
                        {"DatasetArn": a, "DatasetType": t, "Status": s} for a, t, s in datasets
                    ],
                }
            ]
        },
        {"ProjectNames": ["cxr"]},
    )


def expect_dataset(rekognition: Any, dataset_arn: str, status: str, total: int = 0, **kw: Any):
    rekognition.stubber.add_response(
        "describe_dataset",
        {
            "DatasetDescription": {
                "Status": status,
                "StatusMessage": kw.get("message", status),
                "DatasetStats": {
                    "TotalEntries": total,
                    "LabeledEntries": kw.get("labelled", total),
                    "TotalLabels": 2,
                    "ErrorEntries": kw.get("errors", 0),
                },
            }
        },
        {"DatasetArn": dataset_arn},
    )


def summary_json(f1: float = 0.912) -> dict[str, Any]:
    """A training results summary file (EvaluationSummary-<project>-<version>.json)."""
    return {
        "Version": 1,
        "AggregatedEvaluationResults": {
            "ConfusionMatrix": [],
            "F1Score": f1,
            "Precision": 0.9,
            "Recall": 0.92,
        },
        "EvaluationDetails": {
            "EvaluationEndTimestamp": "2026-01-05T11:00:00.000000",
            "Labels": ["Normal", "Pneumonia"],
            "NumberOfTestingImages": 4,
            "NumberOfTrainingImages": 16,
            "ProjectVersionArn": arn("v2"),
        },
        "LabelEvaluationResults": [
            {
                "Label": "Pneumonia",
                "Metrics": {"F1Score": 0.93, "Precision": 0.95, "Recall": 0.91, "Threshold": 0.5},
                "NumberOfTestingImages": 2,
            },
            {
                "Label": "Normal",
                "Metrics": {"F1Score": 0.89, "Precision": 0.875, "Recall": 0.9, "Threshold": 0.5},
                "NumberOfTestingImages": 2,
            },
        ],
    }


def completed(name: str, *, f1: float = 0.912, billable: int = 5400, **extra: Any):
    """A version that finished training, with its summary file in the output bucket."""
    return version(
        name,
        "TRAINING_COMPLETED",
        TrainingEndTimestamp=datetime(2026, 1, 5, 11, 0, tzinfo=UTC),
        BillableTrainingTimeInSeconds=billable,
        EvaluationResult={
            "F1Score": f1,
            "Summary": {
                "S3Object": {
                    "Bucket": OUTPUT_BUCKET,
                    "Name": f"bot/output/EvaluationSummary-cxr-{name}.json",
                }
            },
        },
        **extra,
    )


def put_summary(s3: Any, name: str, f1: float = 0.912) -> None:
    s3.put_object(
        Bucket=OUTPUT_BUCKET,
        Key=f"bot/output/EvaluationSummary-cxr-{name}.json",
        Body=json.dumps(summary_json(f1)).encode(),
    )


# --- S3 (moto) ------------------------------------------------------------------------------
def make_buckets(s3: Any) -> None:
    s3.create_bucket(Bucket=DATA_BUCKET)
    s3.create_bucket(Bucket=OUTPUT_BUCKET)
    s3.create_bucket(
        Bucket=FOREIGN_BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )


def put_tree(
    s3: Any,
    prefix: str = "xrays",
    *,
    normal: int = 10,
    pneumonia: int = 10,
    bucket: str = DATA_BUCKET,
    side: int = 96,
) -> list[str]:
    """Synthetic X-rays under prefix/Normal/ and prefix/Pneumonia/ (JPEG and PNG mixed)."""
    keys = []
    for folder, count in (("Normal", normal), ("Pneumonia", pneumonia)):
        for i in range(count):
            image = chest_xray(seed=i, size=(side, side + 8), pneumonia=folder == "Pneumonia")
            png = i % 3 == 0
            key = f"{prefix}/{folder}/img{i:03d}.{'png' if png else 'jpeg'}"
            s3.put_object(
                Bucket=bucket, Key=key, Body=png_bytes(image) if png else jpeg_bytes(image)
            )
            keys.append(key)
    return keys


# --- the chat and the serving router --------------------------------------------------------
@dataclass
class RecordingOutbox:
    posts: list[tuple[str, Notice]] = field(default_factory=list)
    updates: list[tuple[PostedMessage, Notice]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)  # channels where posting fails

    async def post(self, channel: str, notice: Notice, *, thread_ts: str | None = None):
        if channel in self.refuse:
            raise RuntimeError("not_in_channel")
        self.posts.append((channel, notice))
        return PostedMessage(channel, f"1760000000.{len(self.posts):06d}")

    async def update(self, message: PostedMessage, notice: Notice) -> None:
        self.updates.append((message, notice))

    async def react(self, channel: str, ts: str, add: str, remove: str | None = None) -> None:
        pass

    async def attach_images(self, channel: str, thread_ts: str, images: Any) -> None:
        pass

    def of(self, kind: type) -> list[tuple[str, Any]]:
        return [(c, n) for c, n in self.posts if isinstance(n, kind)]


class LocalModel:
    """A stand-in for the bundled ONNX model."""

    max_side = 512
    model = ModelInfo(kind="local", name="cxr-cnn", version="v1")

    async def classify(self, image: Any) -> Prediction:
        raise AssertionError("not used by the lifecycle tests")


def no_guard(image: Any) -> None:
    """The X-ray guard is intake's business; these tests post no images."""


@dataclass
class Built:
    lifecycle: Lifecycle
    outbox: RecordingOutbox
    clock: FakeClock
    router: ModelRouter
    ops: OperationStore
    runs: RunStore
    audit: AuditLog
    db: Database


def build(
    db_path: Path,
    rekognition: Any,
    s3: Any = None,
    *,
    clock: FakeClock | None = None,
    output: str | None = OUTPUT,
    serving_arn: str | None = None,
    project: bool = True,
    card: dict[str, Any] | None = None,
) -> Built:
    clock = clock or FakeClock()
    db = open_database(db_path)
    outbox = RecordingOutbox()
    primary = None
    if serving_arn:
        from bot.adapters.rekognition import RekognitionClassifier

        primary = RekognitionClassifier(rekognition, serving_arn)
    router = ModelRouter(primary, LocalModel(), fallback=True, clock=clock)
    images = S3Images(lambda: s3)
    state = SqliteStore(db)
    ops, runs, audit = state.operations, state.runs, state.audit

    def make_primary(version_arn: str) -> Any:
        from bot.adapters.rekognition import RekognitionClassifier

        return RekognitionClassifier(rekognition, version_arn)

    lifecycle = Lifecycle(
        config=LifecycleConfig(
            project_arn=PROJECT_ARN if project else None,
            region=REGION,
            output=S3Uri.parse(output) if output else None,
            poll_seconds=POLL,
            max_units=5,
            ops_channel="C0OPS0001",
            serve_running_on_start=project and serving_arn is None,
        ),
        catalog=RekognitionModels(rekognition, PROJECT_ARN) if project else None,
        training=RekognitionTraining(rekognition, PROJECT_ARN, images) if project else None,
        images=images if project else None,
        store=state,
        prices=Prices(4.0, 1.0),
        outbox=outbox,
        clock=clock,
        serving=RouterServing(router, make_primary),
        model_card=lambda: card,
    )
    return Built(lifecycle, outbox, clock, router, ops, runs, audit, db)


async def poll(built: Built, times: int = 1) -> None:
    """Let the watcher take `times` polls: advance the fake clock, wait for each to finish."""
    for _ in range(times):
        await built.lifecycle.settle()  # asleep on the clock, so the advance wakes it
        await built.clock.advance(POLL)
        await built.lifecycle.settle()


def create_dataset_params(manifest_key: str) -> dict[str, Any]:
    return {
        "ProjectArn": PROJECT_ARN,
        "DatasetType": "TRAIN",
        "DatasetSource": {
            "GroundTruthManifest": {"S3Object": {"Bucket": OUTPUT_BUCKET, "Name": manifest_key}}
        },
    }


def expect_training_setup(rekognition: Any, name: str, *, images: int = 20) -> None:
    """Every AWS answer from "datasets" to "training": create, import, split, CreateProjectVersion."""
    stub = rekognition.stubber
    expect_project(rekognition)  # no datasets yet
    stub.add_response(
        "create_dataset",
        {"DatasetArn": TRAIN_DATASET},
        create_dataset_params(f"bot/manifests/{name}.manifest"),
    )
    stub.add_response(
        "create_dataset",
        {"DatasetArn": TEST_DATASET},
        {"ProjectArn": PROJECT_ARN, "DatasetType": "TEST"},
    )
    expect_dataset(rekognition, TRAIN_DATASET, "CREATE_COMPLETE", images)
    expect_dataset(rekognition, TEST_DATASET, "CREATE_COMPLETE", 0)
    stub.add_response(
        "distribute_dataset_entries",
        {},
        {"Datasets": [{"Arn": TRAIN_DATASET}, {"Arn": TEST_DATASET}]},
    )
    expect_dataset(rekognition, TRAIN_DATASET, "UPDATE_COMPLETE", images - images // 5)
    expect_dataset(rekognition, TEST_DATASET, "UPDATE_COMPLETE", images // 5)
    stub.add_response(
        "create_project_version",
        {"ProjectVersionArn": arn(name)},
        {
            "ProjectArn": PROJECT_ARN,
            "VersionName": name,
            "OutputConfig": {"S3Bucket": OUTPUT_BUCKET, "S3KeyPrefix": "bot/output/"},
            "VersionDescription": ANY,
        },
    )


# --- a stateful Rekognition for the wire tests (a before-call event hook) -------------------
class RekognitionWorld:
    """Answers every Rekognition call from one shared state, whoever asks (the lifecycle
    watcher and the cost guard poll the same versions), the way the Stubber answers: through
    botocore's `before-call` event, after request validation, with each answer checked against
    the service model's output shape. Datasets move on by themselves (IN_PROGRESS on the call,
    COMPLETE at the next look); versions move when a test says so (`set`)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.versions: dict[str, dict[str, Any]] = {}
        self.datasets: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.gate: Any = None  # a threading.Event every call waits for, when set
        client.meta.events.register("before-call.rekognition", self._answer)

    def add(self, *descriptions: dict[str, Any]) -> RekognitionWorld:
        for description in descriptions:
            name = description["ProjectVersionArn"].split("/version/")[1].split("/")[0]
            self.versions[name] = dict(description)
        return self

    def set(self, name: str, status: str, **extra: Any) -> None:
        self.versions[name].update(Status=status, StatusMessage=f"The model is {status}.", **extra)

    def called(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == operation]

    def _answer(self, model: Any, params: dict[str, Any], **_: Any) -> Any:
        """`params` is the request as serialized (validated by then): Rekognition speaks JSON,
        so the body holds the operation's parameters."""
        from botocore.awsrequest import AWSResponse
        from botocore.validate import validate_parameters

        body = params.get("body") or b"{}"
        params = json.loads(body.decode() if isinstance(body, bytes) else body)
        if self.gate is not None:
            assert self.gate.wait(20), "the test never opened the gate"
        self.calls.append((model.name, params))
        handler = getattr(self, "_" + model.name, None)
        assert handler is not None, f"RekognitionWorld can't answer {model.name}"
        body = handler(params)
        if "Error" in body:
            return AWSResponse(None, 400, {}, None), {
                **body,
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
        validate_parameters(body, model.output_shape)
        return AWSResponse(None, 200, {}, None), body

    def _DescribeProjectVersions(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ProjectVersionDescriptions": [dict(v) for v in self.versions.values()]}

    def _StartProjectVersion(self, params: dict[str, Any]) -> dict[str, Any]:
        version = self._by_arn(params["ProjectVersionArn"])
        version.update(
            Status="STARTING",
            MinInferenceUnits=params["MinInferenceUnits"],
            **(
                {"MaxInferenceUnits": params["MaxInferenceUnits"]}
                if "MaxInferenceUnits" in params
                else {}
            ),
        )
        return {"Status": "STARTING"}

    def _StopProjectVersion(self, params: dict[str, Any]) -> dict[str, Any]:
        self._by_arn(params["ProjectVersionArn"])["Status"] = "STOPPING"
        return {"Status": "STOPPING"}

    def _DescribeProjects(self, params: dict[str, Any]) -> dict[str, Any]:
        datasets = [
            {"DatasetArn": a, "DatasetType": d["type"], "Status": d["status"]}
            for a, d in self.datasets.items()
        ]
        return {
            "ProjectDescriptions": [
                {"ProjectArn": PROJECT_ARN, "Status": "CREATED", "Datasets": datasets}
            ]
        }

    def _CreateDataset(self, params: dict[str, Any]) -> dict[str, Any]:
        dataset_arn = TRAIN_DATASET if params["DatasetType"] == "TRAIN" else TEST_DATASET
        total = 20 if params["DatasetType"] == "TRAIN" else 0
        self.datasets[dataset_arn] = {
            "type": params["DatasetType"],
            "status": "CREATE_IN_PROGRESS",
            "total": total,
        }
        return {"DatasetArn": dataset_arn}

    def _DescribeDataset(self, params: dict[str, Any]) -> dict[str, Any]:
        dataset = self.datasets[params["DatasetArn"]]
        status = dataset["status"]
        dataset["status"] = status.replace("_IN_PROGRESS", "_COMPLETE")
        return {
            "DatasetDescription": {
                "Status": status,
                "DatasetStats": {
                    "TotalEntries": dataset["total"],
                    "LabeledEntries": dataset["total"],
                    "TotalLabels": 2,
                    "ErrorEntries": 0,
                },
            }
        }

    def _DistributeDatasetEntries(self, params: dict[str, Any]) -> dict[str, Any]:
        train, test = (self.datasets[d["Arn"]] for d in params["Datasets"])
        moved = train["total"] // 5
        train.update(status="UPDATE_IN_PROGRESS", total=train["total"] - moved)
        test.update(status="UPDATE_IN_PROGRESS", total=moved)
        return {}

    def _CreateProjectVersion(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["VersionName"]
        self.add(version(name, "TRAINING_IN_PROGRESS"))
        return {"ProjectVersionArn": arn(name)}

    def _by_arn(self, version_arn: str) -> dict[str, Any]:
        return next(v for v in self.versions.values() if v["ProjectVersionArn"] == version_arn)
