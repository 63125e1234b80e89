"""`/cxr train s3://bucket/prefix [name]`: the checks and the launch (`TrainingLauncher`), then
the phases the poller walks through (`TrainingPhases`).

Nothing reaches Rekognition until the images pass every check (`bot.core.training_data`);
a refusal names each problem. Then: DATASETS (replace the project's datasets), CREATING (wait
for the imports, split 20% into TEST), SPLITTING (wait, then CreateProjectVersion), TRAINING
(follow the version, post its metrics and cost). Each step stores what it created in the
operation, so a restart between steps loses nothing; the progress message is updated in place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bot.core import model_versions as mv
from bot.core.fleet.lifecycle import LifecycleContext, VersionSnapshot, aws_error, reply
from bot.core.fleet.notices import (
    Refused,
    SourceUnreadable,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRefused,
)
from bot.core.fleet.state import (
    CREATING,
    DATASETS,
    SPLITTING,
    TRAIN,
    TRAINING,
    VALIDATING,
    Operation,
)
from bot.core.model_versions import LabelMetrics
from bot.core.ports import Notice, PostedMessage
from bot.core.training_data import (
    Problem,
    S3Uri,
    image_problems,
    layout_problems,
    manifest,
    scan,
    valid_version_name,
)

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
    precision: float | None = None
    recall: float | None = None
    labels: tuple[LabelMetrics, ...] = ()
    train_images: int | None = None
    test_images: int | None = None


class TrainingBackend(Protocol):
    """Rekognition's datasets and training (the adapter: `bot.adapters.rekognition_models`)."""

    async def project_datasets(self) -> list[DatasetInfo]: ...

    async def describe_dataset(self, arn: str) -> DatasetInfo: ...

    async def create_dataset(self, dataset_type: str, manifest: tuple[str, str] | None) -> str:
        """Create the TRAIN (from a manifest: (bucket, key)) or an empty TEST dataset."""
        ...

    async def delete_dataset(self, arn: str) -> None: ...

    async def distribute(self, train_arn: str, test_arn: str) -> None: ...

    async def create_version(self, name: str, output_bucket: str, output_prefix: str) -> str: ...

    async def evaluation(self, summary: tuple[str, str]) -> Evaluation: ...


class TrainingPhases:
    def __init__(self, ctx: LifecycleContext) -> None:
        self.ctx = ctx

    async def step(self, op: Operation, snapshot: VersionSnapshot | None) -> None:
        if op.phase == VALIDATING:
            await self.interrupted(op)  # its command died with a previous run
            return
        assert self.ctx.training is not None
        if op.phase == DATASETS:
            await self._datasets(op)
        elif op.phase == CREATING:
            await self._wait(op, "CREATE", SPLITTING)
        elif op.phase == SPLITTING:
            await self._wait(op, "UPDATE", TRAINING)
        elif op.phase == TRAINING and snapshot is not None:
            await self._follow(op, snapshot)

    async def interrupted(self, op: Operation) -> None:
        """A restart cut the image checks short: nothing reached Rekognition, say so."""
        await self.ctx.finish(
            op,
            "failed: interrupted by a restart",
            TrainingFailed(
                version_name=op.version_name,
                reason="the bot restarted while it was checking the images, before anything "
                f"was sent to Rekognition. Run `/cxr train {op.data.get('source', '')}` again.",
                by=op.user,
            ),
        )

    async def _datasets(self, op: Operation) -> None:
        """Delete the project's old datasets (one TRAIN and one TEST per project), then create
        the new ones: TRAIN from the manifest, TEST empty (filled by the split)."""
        training = self.ctx.training
        assert training is not None
        ours = op.data.get("datasets") or {}
        current = await training.project_datasets()
        old = [d for d in current if d.arn not in ours.values()]
        if old:
            for dataset in old:
                if dataset.status.endswith("_IN_PROGRESS"):
                    continue  # wait: deleting, or still being created or updated
                try:
                    await training.delete_dataset(dataset.arn)
                except Exception as exc:
                    await self._failed(
                        op, f"I couldn't delete the old {dataset.type} dataset: {aws_error(exc)}"
                    )
                    return
            return
        bucket, key = op.data["manifest"]
        try:
            train = ours.get("TRAIN") or await training.create_dataset("TRAIN", (bucket, key))
            ours = {**ours, "TRAIN": train}
            await self.ctx.ops.update(op.id, data={"datasets": ours})
            test = ours.get("TEST") or await training.create_dataset("TEST", None)
        except Exception as exc:
            await self._failed(op, f"creating the datasets failed: {aws_error(exc)}")
            return
        await self.ctx.ops.update(op.id, phase=CREATING, data={"datasets": {**ours, "TEST": test}})
        await self._progress(op.id)

    async def _wait(self, op: Operation, action: str, next_phase: str) -> None:
        """Wait for both datasets to finish `action` (CREATE or UPDATE), then take the next
        step: split the training images (CREATE done) or train (UPDATE done)."""
        ctx = self.ctx
        assert ctx.training is not None
        datasets = op.data.get("datasets") or {}
        described = [await ctx.training.describe_dataset(datasets[t]) for t in ("TRAIN", "TEST")]
        failed = next((d for d in described if d.status.endswith("_FAILED")), None)
        if failed is not None:
            reason = failed.status_message or failed.status
            await self._failed(op, f"the {failed.type} dataset failed: {reason}")
            return
        if any(d.status.endswith("_IN_PROGRESS") for d in described):
            return
        train, test = described
        if action == "CREATE":
            if train.total == 0 or train.labelled == 0:
                await self._failed(
                    op,
                    "Rekognition imported no labelled images from the manifest "
                    f"({train.errors or 0} entries with errors).",
                )
                return
            try:
                await ctx.training.distribute(train.arn, test.arn)
            except Exception as exc:
                await self._failed(op, f"splitting the datasets failed: {aws_error(exc)}")
                return
            detail = f"{train.labelled or train.total:,} images imported"
            if train.errors:
                detail += f" ({train.errors} with errors, skipped)"
            await ctx.ops.update(
                op.id, phase=next_phase, data={"detail": detail + ".", "unexpected": 0}
            )
            await self._progress(op.id)
            return
        if not test.total:
            if test.status == "UPDATE_COMPLETE" or not await ctx.patient(op):
                await self._failed(op, "the split left the test dataset empty")
            return  # else: the split hasn't shown up yet
        await ctx.ops.update(
            op.id,
            phase=next_phase,
            data={
                "detail": f"{train.total or 0:,} training and {test.total:,} test images.",
                "split": [train.total, test.total],
            },
        )
        await self._create_version(await ctx.ops.get(op.id) or op)

    async def _create_version(self, op: Operation) -> None:
        ctx = self.ctx
        assert ctx.training is not None and ctx.config.output is not None
        output = ctx.config.output
        try:
            arn = await ctx.training.create_version(
                op.version_name, output.bucket, output.key("output") + "/"
            )
        except Exception as exc:
            await self._failed(op, f"CreateProjectVersion failed: {aws_error(exc)}")
            return
        await ctx.ops.update(op.id, version_arn=arn, status=mv.TRAINING_IN_PROGRESS)
        await self._progress(op.id)

    async def _follow(self, op: Operation, snapshot: VersionSnapshot) -> None:
        ctx = self.ctx
        version = snapshot.find(op.version_arn or op.version_name)
        if version is None:
            if op.version_arn is None:  # a restart came between the split and the call
                await self._create_version(op)
            return
        if version.status != op.status:
            await ctx.ops.update(op.id, status=version.status, version_arn=version.arn)
        if version.status == mv.TRAINING_IN_PROGRESS:
            return
        if version.status == mv.TRAINING_FAILED:
            await self._failed(op, version.status_message or "Rekognition gave no reason")
            return
        evaluation = Evaluation()
        if version.evaluation_summary_s3 and ctx.training is not None:
            try:
                evaluation = await ctx.training.evaluation(version.evaluation_summary_s3)
                ctx.evaluations[version.arn] = evaluation
            except Exception as exc:
                log.warning("lifecycle.evaluation_unreadable", extra={"error": aws_error(exc)})
        billable = version.billable_training_seconds
        f1 = version.f1 if version.f1 is not None else evaluation.f1
        split = op.data.get("split") or [None, None]
        ended = version.training_ended or ctx.clock.now()
        await ctx.finish(
            op,
            f"ok: F1 {f1:.3f}" if f1 is not None else f"ok: {version.status}",
            TrainingCompleted(
                version_name=version.name,
                f1=f1,
                labels=list(evaluation.labels),
                billable_seconds=billable,
                cost=ctx.prices.training_cost(billable) if billable is not None else None,
                wall_seconds=max(0.0, (ended - op.started_at).total_seconds()),
                train_images=evaluation.train_images or split[0],
                test_images=evaluation.test_images or split[1],
                by=op.user,
            ),
        )
        await self._progress(op.id, done=True)

    async def _failed(self, op: Operation, reason: str) -> None:
        await self.ctx.finish(
            op,
            f"failed: {reason}",
            TrainingFailed(version_name=op.version_name, reason=reason, by=op.user),
        )
        await self._progress(op.id, done=True)

    async def _progress(self, op_id: int, *, done: bool = False) -> None:
        """Update the training's progress message in place."""
        op = await self.ctx.ops.get(op_id)
        if op is None or not op.data.get("message"):
            return
        channel, ts = op.data["message"]
        notice = TrainingProgress(
            version_name=op.version_name,
            source=op.data.get("source", ""),
            counts=op.data.get("counts", {}),
            phase=op.phase,
            by=op.user,
            detail=op.data.get("detail", ""),
            replacing=bool(op.data.get("old_datasets")),
            done=done,
        )
        try:
            await self.ctx.outbox.update(PostedMessage(channel, ts), notice)
        except Exception as exc:
            log.info("lifecycle.progress_update_failed", extra={"error": type(exc).__name__})


class TrainingLauncher:
    def __init__(self, ctx: LifecycleContext, follow: Callable[[], None]) -> None:
        self.ctx = ctx
        self.follow = follow  # make sure the poller follows the operations now open

    async def train(
        self, actor: str, channel: str, source_text: str, version_name: str | None = None
    ) -> Notice:
        """Check the folder tree, write the manifest, and set the training going.

        The checks read every image's header, which takes a while for thousands of images, so
        the caller has acknowledged the command already.
        """
        ctx = self.ctx
        if ctx.catalog is None or ctx.training is None or ctx.images is None:
            return ctx.rekognition_only("train")
        try:
            source = S3Uri.parse(source_text)
        except ValueError as exc:
            return Refused(reason="bad-source", detail=str(exc))
        output = ctx.config.output
        if output is None:
            return Refused(reason="no-output")
        busy = await ctx.ops.open_training()
        if busy is not None:
            return self._training_busy(busy, actor)
        if version_name is not None and not valid_version_name(version_name):
            return await self._refuse_name(
                actor,
                version_name,
                f"`{version_name}` can't be a version name: use 1 to 255 letters, digits, "
                "dots, dashes and underscores.",
            )
        snapshot = await ctx.versions_or_reply()
        if isinstance(snapshot, Notice):
            return snapshot
        training = next(
            (v for v in snapshot.by_name.values() if v.status == mv.TRAINING_IN_PROGRESS), None
        )
        if training is not None:
            return Refused(reason="training-elsewhere", tone="busy", version_name=training.name)
        now = ctx.clock.now()
        if version_name is None:
            version_name = await self._free_name(snapshot, now)
        elif snapshot.find(version_name) is not None:
            return await self._refuse_name(
                actor,
                version_name,
                f"The name `{version_name}` is already used by a version in this project. "
                "Pick another, or leave it out and I'll choose one.",
            )
        ctx.claiming.add(version_name)
        try:
            op = await ctx.ops.claim(
                TRAIN,
                version_name,
                channel=channel,
                user=actor,
                at=now,
                status="VALIDATING",
                phase=VALIDATING,
                data={"source": str(source)},
            )
        finally:  # no await from here to `commanding`, which marks the claimed operation
            ctx.claiming.discard(version_name)
        if op is None:
            busy = await ctx.ops.open_training() or await ctx.ops.open_for(version_name)
            if busy is not None:
                return self._training_busy(busy, actor)
            return Refused(reason="name-in-use", tone="busy")
        async with ctx.commanding(op.id):
            try:
                return await self._validate_and_launch(op, actor, channel, source, output)
            except Exception as exc:
                reason = aws_error(exc)
                log.warning("lifecycle.train_check_failed", extra={"error": reason})
                await ctx.ops.finish(op.id, ctx.clock.now(), f"failed: {reason}")
                await ctx.audit.record(now, actor, "train", version_name, f"failed: {reason}")
                return SourceUnreadable(source=str(source), error=reason)

    async def _validate_and_launch(
        self, op: Operation, actor: str, channel: str, source: S3Uri, output: S3Uri
    ) -> Notice:
        ctx = self.ctx
        images = ctx.images
        assert images is not None
        problems = await self._region_problems(source, output)
        if problems:
            return await self._refuse_images(op, actor, source, problems)
        found = scan(source, await images.list_objects(source.bucket, source.prefix))
        problems = layout_problems(found, ctx.config.min_images_per_label)
        if problems:
            return await self._refuse_images(op, actor, source, problems)
        headers = await images.probe(source.bucket, [i.key for i in found.images])
        problems = image_problems(found, headers)
        if problems:
            return await self._refuse_images(op, actor, source, problems)

        now = ctx.clock.now()
        manifest_key = output.key("manifests", f"{op.version_name}.manifest")
        await images.put_text(
            output.bucket,
            manifest_key,
            manifest(source.bucket, found.images, now),
            "application/x-ndjson",
        )
        counts = {label.value: n for label, n in found.counts().items()}
        existing = await ctx.training.project_datasets() if ctx.training else []
        progress = TrainingProgress(
            version_name=op.version_name,
            source=str(source),
            counts=counts,
            phase=DATASETS,
            by=actor,
            replacing=bool(existing),
        )
        data: dict[str, Any] = {
            "manifest": [output.bucket, manifest_key],
            "counts": counts,
            "old_datasets": [d.arn for d in existing],
        }
        await ctx.ops.update(op.id, status="PREPARING", phase=DATASETS, data=data)
        message = await ctx.post(channel, progress)
        if message is not None:
            await ctx.ops.update(op.id, data={"message": [message.channel, message.ts]})
        total = sum(counts.values())
        await ctx.audit.record(
            now, actor, "train", op.version_name, f"requested ({total} images from {source})"
        )
        log.info("lifecycle.train_requested", extra={"version": op.version_name, "images": total})
        self.follow()
        return reply(
            f"Training {op.version_name} from {source}: {total:,} images "
            f"({', '.join(f'{n:,} {k}' for k, n in counts.items())}), manifest written to "
            f"s3://{output.bucket}/{manifest_key}. I'll post progress in this channel.",
            "ok",
        )

    async def _region_problems(self, source: S3Uri, output: S3Uri) -> list[Problem]:
        """Rekognition only reads buckets in its own region: check the source's and output's."""
        assert self.ctx.images is not None
        region = self.ctx.config.region
        problems: list[Problem] = []
        for bucket in dict.fromkeys([source.bucket, output.bucket]):
            bucket_region = await self.ctx.images.bucket_region(bucket)
            if region and bucket_region != region:
                problems.append(
                    Problem(
                        f"Bucket `{bucket}` is in {bucket_region}, but the bot's Rekognition "
                        f"project is in {region}: Rekognition only reads buckets in its own "
                        "region. Copy the images to a bucket there."
                    )
                )
        return problems

    async def _refuse_images(
        self, op: Operation, actor: str, source: S3Uri, problems: list[Problem]
    ) -> Notice:
        """The images failed a check: close the claimed operation and list the problems."""
        summary = problems[0].title
        await self.ctx.ops.finish(op.id, self.ctx.clock.now(), f"refused: {summary}")
        await self.ctx.audit.record(
            self.ctx.clock.now(), actor, "train", op.version_name, f"refused: {summary}"
        )
        return TrainingRefused(source=str(source), problems=problems)

    async def _refuse_name(self, actor: str, target: str, reason: str) -> Notice:
        """Refuse before anything is claimed (a bad or taken name), and record it."""
        await self.ctx.audit.record(
            self.ctx.clock.now(), actor, "train", target, f"refused: {reason}"
        )
        return reply(reason, "refused")

    def _training_busy(self, op: Operation, actor: str) -> Notice:
        return self.ctx.busy(
            op, actor, "already training", note="One training at a time.", phase=op.phase
        )

    async def _free_name(self, snapshot: VersionSnapshot, now: datetime) -> str:
        base = f"{self.ctx.config.project_name or 'cxr'}.{now:%Y-%m-%d}"
        name, n = base, 1
        while snapshot.find(name) is not None or await self.ctx.ops.open_for(name) is not None:
            n += 1
            name = f"{base}.{n}"
        return name
