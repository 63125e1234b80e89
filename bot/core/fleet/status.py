"""`/cxr status`: what the bot serves, the project's versions with their metrics and costs,
the running meter, the operations in flight and the recent actions (`StatusReporter`), as a
`StatusReport` the Slack module lays out. Read-only, apart from keeping the serving version in
line with Rekognition and caching the per-label metrics read from training summaries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.core.fleet.lifecycle import LifecycleContext, VersionSnapshot, aws_error
from bot.core.fleet.state import START, STOP, TRAIN, Operation
from bot.core.model_versions import LabelMetrics, ModelVersion
from bot.core.ports import Notice
from bot.core.pricing import usd


@dataclass(frozen=True)
class VersionRow:
    name: str
    arn: str
    status: str
    status_message: str = ""
    created: datetime | None = None
    f1: float | None = None
    labels: tuple[LabelMetrics, ...] = ()
    min_units: int | None = None
    max_units: int | None = None
    running_seconds: float | None = None  # this run so far, when the bot has a record of it
    cost_so_far: float | None = None
    serving: bool = False
    operation: str | None = None  # "starting", "stopping", "training" (by the bot, now)
    operation_by: str = ""
    billable_training_seconds: int | None = None


@dataclass(frozen=True)
class OperationLine:
    kind: str
    version_name: str
    user: str
    started_at: datetime
    phase: str
    channel: str


@dataclass(frozen=True)
class AuditLine:
    at: datetime
    actor: str
    action: str
    target: str
    result: str


@dataclass
class StatusReport(Notice):
    project: str | None = None
    rows: list[VersionRow] = field(default_factory=list)
    hidden_versions: int = 0
    operations: list[OperationLine] = field(default_factory=list)
    audit: list[AuditLine] = field(default_factory=list)
    serving: str = ""  # the model that answers, in words
    notes: list[str] = field(default_factory=list)
    local_card: dict[str, Any] | None = None  # the local model's card (local-only mode)
    now: datetime | None = None
    inference_unit_hour: float = 0.0


log = logging.getLogger(__package__)

STATUS_VERSIONS_SHOWN = 12
EVALUATIONS_FETCHED = 6  # per /cxr status: summary files read from S3 (then cached)
AUDIT_LINES = 5
OPERATION_AS_ING = {TRAIN: "training", START: "starting", STOP: "stopping"}


class StatusReporter:
    def __init__(self, ctx: LifecycleContext) -> None:
        self.ctx = ctx

    async def report(self) -> StatusReport:
        ctx = self.ctx
        now = ctx.clock.now()
        audit = [
            AuditLine(a.at, a.actor, a.action, a.target, a.result)
            for a in await ctx.audit.recent(AUDIT_LINES)
        ]
        operations = [
            OperationLine(op.kind, op.version_name, op.user, op.started_at, op.phase, op.channel)
            for op in await ctx.ops.open()
        ]
        serving = self.serving_phrase()
        common = {
            "audit": audit,
            "operations": operations,
            "now": now,
            "inference_unit_hour": ctx.prices.inference_unit_hour,
        }
        if ctx.catalog is None:
            card = ctx.model_card()
            return StatusReport(
                serving=serving,
                local_card=card or {},
                notes=[
                    "The local model is the only classifier: /cxr start, stop and train manage a "
                    "Rekognition Custom Labels model and need CXR_PROJECT_ARN (and AWS_REGION)."
                ],
                **common,
            )
        try:
            snapshot = await ctx.versions()
        except Exception as exc:
            log.warning("status.describe_failed", extra={"error": aws_error(exc)})
            return StatusReport(
                project=ctx.config.project_name,
                serving=serving,
                notes=[f"I couldn't read the project's versions: {aws_error(exc)}"],
                **common,
            )
        await ctx.sync(snapshot)
        serving = self.serving_phrase(snapshot)
        ordered = snapshot.newest_first()
        shown = ordered[:STATUS_VERSIONS_SHOWN]
        await self._load_evaluations(shown[:EVALUATIONS_FETCHED])
        open_ops = {op.version_name: op for op in await ctx.ops.open()}
        serving_arn = ctx.serving.version_arn()
        rows = [await self._row(v, now, serving_arn, open_ops.get(v.name)) for v in shown]
        notes = [f"Cost guard: {line}" for line in await ctx.meter()]
        notes.append(
            f"Prices are estimates: {usd(ctx.prices.inference_unit_hour)} per inference-unit "
            f"hour while running, {usd(ctx.prices.training_hour)} per training hour."
        )
        return StatusReport(
            project=ctx.config.project_name,
            rows=rows,
            hidden_versions=len(ordered) - len(shown),
            serving=serving,
            notes=notes,
            **common,
        )

    async def _row(
        self, version: ModelVersion, now: datetime, serving_arn: str | None, op: Operation | None
    ) -> VersionRow:
        prices = self.ctx.prices
        run = await self.ctx.runs.current(version.arn) if version.running else None
        evaluation = self.ctx.evaluations.get(version.arn)
        return VersionRow(
            name=version.name,
            arn=version.arn,
            status=version.status,
            status_message=version.status_message,
            created=version.created,
            f1=version.f1 if version.f1 is not None else (evaluation.f1 if evaluation else None),
            labels=evaluation.labels if evaluation else (),
            min_units=version.min_units,
            max_units=version.max_units,
            running_seconds=run.seconds(now) if run else None,
            cost_so_far=prices.running_cost(run.units, run.started_at, now) if run else None,
            serving=version.arn == serving_arn,
            operation=OPERATION_AS_ING.get(op.kind, op.kind) if op else None,
            operation_by=op.user if op else "",
            billable_training_seconds=version.billable_training_seconds,
        )

    def serving_phrase(self, snapshot: VersionSnapshot | None = None) -> str:
        """The model that answers, in words; and a warning when its version isn't running."""
        serving = self.ctx.serving
        phrase = serving.current().describe()
        arn = serving.version_arn()
        version = snapshot.find(arn) if snapshot is not None and arn else None
        if version is not None and not version.running:
            phrase += f" (it is {version.status}: " + (
                "the local model answers meanwhile)"
                if serving.has_fallback()
                else "X-rays get no verdict until it is started)"
            )
        return phrase

    async def _load_evaluations(self, versions: Sequence[ModelVersion]) -> None:
        training = self.ctx.training
        if training is None:
            return
        cache = self.ctx.evaluations
        wanted = [v for v in versions if v.evaluation_summary_s3 and v.arn not in cache]

        async def load(version: ModelVersion) -> None:
            assert version.evaluation_summary_s3 is not None
            try:
                cache[version.arn] = await training.evaluation(version.evaluation_summary_s3)
            except Exception as exc:
                log.info("status.evaluation_unavailable", extra={"error": aws_error(exc)})

        await asyncio.gather(*(load(v) for v in wanted))
