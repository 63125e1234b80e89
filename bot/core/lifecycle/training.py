"""`/cxr train s3://bucket/prefix [name]`: check the folder tree, write the manifest, launch.

Nothing reaches Rekognition until the images pass every check (`bot.core.training_data`): the
buckets' region, the folder layout, every image's header. A refusal names each problem, so the
folder can be fixed in one go. Once the manifest is written the operation is in the DATASETS
phase and the watcher takes it on (`bot.core.lifecycle.training_phases`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bot.core import model_versions as mv
from bot.core.fleet.state import TRAIN, Operation
from bot.core.lifecycle.context import LifecycleContext, VersionSnapshot, aws_error, reply
from bot.core.lifecycle.notices import TrainingProgress, TrainingRefused
from bot.core.lifecycle.training_phases import DATASETS, VALIDATING
from bot.core.ports import Notice
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


class TrainingLauncher:
    def __init__(self, ctx: LifecycleContext, follow: Callable[[], None]) -> None:
        self.ctx = ctx
        self.follow = follow  # make sure the watcher follows the operations now open

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
            return reply(f"{exc}.", "refused")
        output = ctx.config.output
        if output is None:
            return reply(
                "Training needs somewhere to write the manifest and the model's output: an admin "
                "must set CXR_TRAINING_OUTPUT_S3 (s3://bucket/prefix, in the bot's region).",
                "refused",
            )
        busy = ctx.ops.open_training()
        if busy is not None:
            return self._training_busy(busy, actor)
        if version_name is not None and not valid_version_name(version_name):
            return self._refuse_name(
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
            return reply(
                f"{training.name} is already training in this project (started outside the "
                "bot or before a restart). One training at a time: try again when it ends.",
                "busy",
            )
        now = ctx.clock.now()
        if version_name is None:
            version_name = self._free_name(snapshot, now)
        elif snapshot.find(version_name) is not None:
            return self._refuse_name(
                actor,
                version_name,
                f"The name `{version_name}` is already used by a version in this project. "
                "Pick another, or leave it out and I'll choose one.",
            )
        op = ctx.ops.claim(
            TRAIN,
            version_name,
            channel=channel,
            user=actor,
            at=now,
            status="VALIDATING",
            phase=VALIDATING,
            data={"source": str(source)},
        )
        if op is None:
            busy = ctx.ops.open_training() or ctx.ops.open_for(version_name)
            if busy is not None:
                return self._training_busy(busy, actor)
            return reply("Another operation is using that name; try again.", "busy")
        async with ctx.commanding(op.id):
            try:
                return await self._validate_and_launch(op, actor, channel, source, output)
            except Exception as exc:
                reason = aws_error(exc)
                log.warning("lifecycle.train_check_failed", extra={"error": reason})
                ctx.ops.finish(op.id, ctx.clock.now(), f"failed: {reason}")
                ctx.audit.record(now, actor, "train", version_name, f"failed: {reason}")
                return reply(f"I couldn't check {source}: {reason}", "error")

    async def _validate_and_launch(
        self, op: Operation, actor: str, channel: str, source: S3Uri, output: S3Uri
    ) -> Notice:
        ctx = self.ctx
        images = ctx.images
        assert images is not None
        problems = await self._region_problems(source, output)
        if problems:
            return self._refuse_images(op, actor, source, problems)
        found = scan(source, await images.list_objects(source.bucket, source.prefix))
        problems = layout_problems(found, ctx.config.min_images_per_label)
        if problems:
            return self._refuse_images(op, actor, source, problems)
        headers = await images.probe(source.bucket, [i.key for i in found.images])
        problems = image_problems(found, headers)
        if problems:
            return self._refuse_images(op, actor, source, problems)

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
        ctx.ops.update(op.id, status="PREPARING", phase=DATASETS, data=data)
        message = await ctx.post(channel, progress)
        if message is not None:
            ctx.ops.update(op.id, data={"message": [message.channel, message.ts]})
        total = sum(counts.values())
        ctx.audit.record(
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

    def _refuse_images(
        self, op: Operation, actor: str, source: S3Uri, problems: list[Problem]
    ) -> Notice:
        """The images failed a check: close the claimed operation and list the problems."""
        summary = problems[0].title
        self.ctx.ops.finish(op.id, self.ctx.clock.now(), f"refused: {summary}")
        self.ctx.audit.record(
            self.ctx.clock.now(), actor, "train", op.version_name, f"refused: {summary}"
        )
        return TrainingRefused(source=str(source), problems=problems)

    def _refuse_name(self, actor: str, target: str, reason: str) -> Notice:
        """Refuse before anything is claimed (a bad or taken name), and record it."""
        self.ctx.audit.record(self.ctx.clock.now(), actor, "train", target, f"refused: {reason}")
        return reply(reason, "refused")

    def _training_busy(self, op: Operation, actor: str) -> Notice:
        return self.ctx.busy(
            op, actor, "already training", note="One training at a time.", phase=op.phase
        )

    def _free_name(self, snapshot: VersionSnapshot, now: datetime) -> str:
        base = f"{self.ctx.config.project_name or 'cxr'}.{now:%Y-%m-%d}"
        name, n = base, 1
        while snapshot.find(name) is not None or self.ctx.ops.open_for(name) is not None:
            n += 1
            name = f"{base}.{n}"
        return name
