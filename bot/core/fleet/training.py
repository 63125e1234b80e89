"""`/cxr train s3://bucket/prefix [name]`: once `Lifecycle.train` has claimed the training,
the image checks and the launch (`launch`), then the phases each poll walks through (`step`).

Nothing reaches Rekognition until the images pass every check (`bot.core.training_data`);
a refusal names each problem. Then: DATASETS (replace the project's datasets), CREATING (wait
for the imports, split 20% into TEST), SPLITTING (wait, then CreateProjectVersion), TRAINING
(follow the version, post its metrics and cost). Each step stores what it created in the
operation, so a restart between steps loses nothing; the progress message is updated in place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from bot.core import model_versions as mv
from bot.core.errors import AwsFailure
from bot.core.fleet import notices as n
from bot.core.fleet.state import (
    CREATING,
    DATASETS,
    SPLITTING,
    TRAIN,
    TRAINING,
    VALIDATING,
    Operation,
)
from bot.core.model_versions import LabelMetrics, ModelVersion
from bot.core.ports import Notice, PostedMessage
from bot.core.training_data import Problem, S3Uri, image_problems, layout_problems, manifest, scan

if TYPE_CHECKING:
    from bot.core.fleet.lifecycle import Lifecycle

log = logging.getLogger(__package__)


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
    labels: tuple[LabelMetrics, ...] = ()
    train_images: int | None = None
    test_images: int | None = None


class TrainingBackend(Protocol):
    """Rekognition's datasets and training (the adapter: `bot.adapters.rekognition_models`)."""

    async def project_datasets(self) -> list[DatasetInfo]: ...

    async def describe_dataset(self, arn: str) -> DatasetInfo: ...

    async def create_dataset(self, dataset_type: str, manifest: tuple[str, str] | None) -> str:
        """Create the TRAIN (from a manifest: (bucket, key)) or an empty TEST dataset."""

    async def delete_dataset(self, arn: str) -> None: ...

    async def distribute(self, train_arn: str, test_arn: str) -> None: ...

    async def create_version(self, name: str, output_bucket: str, output_prefix: str) -> str: ...

    async def evaluation(self, summary: tuple[str, str]) -> Evaluation: ...


# === the checks and the launch ==============================================================
async def launch(lifecycle: Lifecycle, op: Operation, source: S3Uri, output: S3Uri) -> Notice:
    """Check the images (refusing with every problem), write the manifest, post the progress
    message, and leave the rest to the poller."""
    images = lifecycle.images
    assert images is not None
    problems = await _region_problems(lifecycle, source, output)
    if not problems:
        found = scan(source, await images.list_objects(source.bucket, source.prefix))
        problems = layout_problems(found, lifecycle.config.min_images_per_label)
    if not problems:
        headers = await images.probe(source.bucket, [i.key for i in found.images])
        problems = image_problems(found, headers)
    if problems:  # close the claimed operation and list the problems
        await lifecycle.finish(op, "refused: " + ", ".join(p.reason for p in problems))
        return n.TrainingRefused(source=str(source), problems=problems)

    now = lifecycle.clock.now()
    key = output.key("manifests", f"{op.version_name}.manifest")
    text = manifest(source.bucket, found.images, now)
    await images.put_text(output.bucket, key, text, "application/x-ndjson")
    counts = {label.value: count for label, count in found.counts().items()}
    existing = await lifecycle.training.project_datasets() if lifecycle.training else []
    data: dict[str, Any] = {
        "manifest": [output.bucket, key],
        "counts": counts,
        "old_datasets": [d.arn for d in existing],
    }
    op = await lifecycle.ops.update(op.id, status="PREPARING", phase=DATASETS, data=data)
    message = await lifecycle.post(op.channel, _progress_of(op))
    if message is not None:
        await lifecycle.ops.update(op.id, data={"message": [message.channel, message.ts]})
    total = sum(counts.values())
    requested = f"requested ({total} images from {source})"
    await lifecycle.audit.record(now, op.user, TRAIN, op.version_name, requested)
    log.info("lifecycle.train_requested", extra={"version": op.version_name, "images": total})
    lifecycle.poller.follow()
    return n.TrainingStarted(
        version_name=op.version_name,
        source=str(source),
        counts=counts,
        manifest=f"s3://{output.bucket}/{key}",
    )


async def _region_problems(lifecycle: Lifecycle, source: S3Uri, output: S3Uri) -> list[Problem]:
    """Rekognition only reads buckets in its own region: check the source's and output's."""
    assert lifecycle.images is not None
    region = lifecycle.config.region
    problems: list[Problem] = []
    for bucket in dict.fromkeys([source.bucket, output.bucket]):
        bucket_region = await lifecycle.images.bucket_region(bucket)
        if region and bucket_region != region:
            problems.append(Problem("region", source=bucket, regions=(bucket_region, region)))
    return problems


# === the phases =============================================================================
async def step(lifecycle: Lifecycle, op: Operation, snapshot: list[ModelVersion] | None) -> None:
    """Move a training along: one phase's wait or work per poll."""
    if op.phase == VALIDATING:
        await interrupted(lifecycle, op)  # its command died with a previous run
    elif op.phase == DATASETS:
        await _datasets(lifecycle, op)
    elif op.phase in (CREATING, SPLITTING):
        await _wait(lifecycle, op)
    elif op.phase == TRAINING and snapshot is not None:
        await _follow(lifecycle, op, snapshot)


async def interrupted(lifecycle: Lifecycle, op: Operation) -> None:
    """A restart cut the image checks short: nothing reached Rekognition, say so."""
    await _failed(lifecycle, op, "interrupted", detail=op.data.get("source", ""))


async def _datasets(lifecycle: Lifecycle, op: Operation) -> None:
    """Delete the project's old datasets (one TRAIN and one TEST per project), then create
    the new ones: TRAIN from the manifest, TEST empty (filled by the split)."""
    training = lifecycle.training
    assert training is not None
    ours = op.data.get("datasets") or {}
    old = [d for d in await training.project_datasets() if d.arn not in ours.values()]
    for dataset in old:
        if dataset.status.endswith("_IN_PROGRESS"):
            continue  # wait: deleting, or still being created or updated
        try:
            await training.delete_dataset(dataset.arn)
        except Exception as exc:
            await _failed(lifecycle, op, "old-dataset", exc, status=dataset.type)
            return
    if old:
        return  # the next poll creates the new ones once the old are gone
    bucket, key = op.data["manifest"]
    try:
        train = ours.get("TRAIN") or await training.create_dataset("TRAIN", (bucket, key))
        ours = {**ours, "TRAIN": train}
        await lifecycle.ops.update(op.id, data={"datasets": ours})
        test = ours.get("TEST") or await training.create_dataset("TEST", None)
    except Exception as exc:
        await _failed(lifecycle, op, "datasets", exc)
        return
    await lifecycle.ops.update(op.id, phase=CREATING, data={"datasets": {**ours, "TEST": test}})
    await _progress(lifecycle, op.id)


async def _wait(lifecycle: Lifecycle, op: Operation) -> None:
    """Wait for both datasets to be created (CREATING) or updated by the split (SPLITTING),
    then take the next step: split the training images, or train."""
    training = lifecycle.training
    assert training is not None
    datasets = op.data.get("datasets") or {}
    described = [await training.describe_dataset(datasets[t]) for t in ("TRAIN", "TEST")]
    failed = next((d for d in described if d.status.endswith("_FAILED")), None)
    if failed is not None:
        reason = failed.status_message or failed.status
        await _failed(lifecycle, op, "dataset-failed", status=failed.type, detail=reason)
        return
    if any(d.status.endswith("_IN_PROGRESS") for d in described):
        return
    train, test = described
    if op.phase == CREATING:
        if train.total == 0 or train.labelled == 0:
            await _failed(lifecycle, op, "nothing-imported", detail=str(train.errors or 0))
            return
        try:
            await training.distribute(train.arn, test.arn)
        except Exception as exc:
            await _failed(lifecycle, op, "split", exc)
            return
        imported = {"imported": [train.labelled or train.total, train.errors], "unexpected": 0}
        await lifecycle.ops.update(op.id, phase=SPLITTING, data=imported)
        await _progress(lifecycle, op.id)
        return
    if not test.total:
        if test.status == "UPDATE_COMPLETE" or not await lifecycle.patient(op):
            await _failed(lifecycle, op, "split-empty")
        return  # else: the split hasn't shown up yet
    split = {"split": [train.total or 0, test.total]}
    await _create_version(lifecycle, await lifecycle.ops.update(op.id, phase=TRAINING, data=split))


async def _create_version(lifecycle: Lifecycle, op: Operation) -> None:
    training, output = lifecycle.training, lifecycle.config.output
    assert training is not None and output is not None
    try:
        prefix = output.key("output") + "/"
        arn = await training.create_version(op.version_name, output.bucket, prefix)
    except Exception as exc:
        await _failed(lifecycle, op, "create-version", exc)
        return
    await lifecycle.ops.update(op.id, version_arn=arn, status=mv.TRAINING_IN_PROGRESS)
    await _progress(lifecycle, op.id)


async def _follow(lifecycle: Lifecycle, op: Operation, snapshot: list[ModelVersion]) -> None:
    version = mv.find_version(snapshot, op.version_arn or op.version_name)
    if version is None:
        if op.version_arn is None:  # a restart came between the split and the call
            await _create_version(lifecycle, op)
        return
    if version.status != op.status:
        await lifecycle.ops.update(op.id, status=version.status, version_arn=version.arn)
    if version.status == mv.TRAINING_IN_PROGRESS:
        return
    if version.status == mv.TRAINING_FAILED:
        await _failed(lifecycle, op, "rekognition", detail=version.status_message)
        return
    evaluation = await lifecycle.evaluation(version) or Evaluation()
    billable = version.billable_training_seconds
    f1 = version.f1 if version.f1 is not None else evaluation.f1
    split = op.data.get("split") or [None, None]
    completed = n.TrainingCompleted(
        version_name=version.name,
        f1=f1,
        labels=list(evaluation.labels),
        billable_seconds=billable,
        cost=lifecycle.prices.training_cost(billable) if billable is not None else None,
        train_images=evaluation.train_images or split[0],
        test_images=evaluation.test_images or split[1],
        by=op.user,
    )
    result = f"ok: F1 {f1:.3f}" if f1 is not None else f"ok: {version.status}"
    await lifecycle.finish(op, result, completed)
    await _progress(lifecycle, op.id, done=True)


async def _failed(
    lifecycle: Lifecycle,
    op: Operation,
    reason: n.FailureReason,
    exc: Exception | None = None,
    **facts: str,
) -> None:
    """End the training, saying why (the AWS failure `exc`, if one caused it)."""
    failure = AwsFailure.of(exc) if exc is not None else None
    failed = n.TrainingFailed(
        version_name=op.version_name, reason=reason, by=op.user, failure=failure, **facts
    )
    await lifecycle.finish(op, failed.result, failed)
    await _progress(lifecycle, op.id, done=True)


async def _progress(lifecycle: Lifecycle, op_id: int, *, done: bool = False) -> None:
    """Update the training's progress message in place."""
    op = await lifecycle.ops.get(op_id)
    if op is None or not op.data.get("message"):
        return
    try:
        await lifecycle.outbox.update(PostedMessage(*op.data["message"]), _progress_of(op, done))
    except Exception as exc:
        log.info("lifecycle.progress_update_failed", extra={"error": type(exc).__name__})


def _progress_of(op: Operation, done: bool = False) -> n.TrainingProgress:
    """The training's progress message, from what its operation has stored."""
    return n.TrainingProgress(
        version_name=op.version_name,
        source=op.data.get("source", ""),
        counts=op.data.get("counts", {}),
        phase=op.phase,
        by=op.user,
        imported=op.data.get("imported"),
        split=op.data.get("split"),
        detail=op.data.get("detail", ""),  # an older bot's words, for a training it began
        replacing=bool(op.data.get("old_datasets")),
        done=done,
    )
