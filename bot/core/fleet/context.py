"""What the lifecycle's parts share: its ports (`TrainingBackend`, `Serving`; `RouterServing`
is the bot's one `Serving`), its config, and `LifecycleContext`: reading the versions, leasing
an operation while its command talks to AWS, closing an operation and posting its outcome,
keeping the serving version in line with Rekognition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.core.clock import Clock
from bot.core.errors import UserFacingError
from bot.core.fleet.arns import project_name
from bot.core.fleet.decisions import UNEXPECTED_READINGS
from bot.core.fleet.notices import Busy, LifecycleReply
from bot.core.fleet.state import Audit, Leases, Operation, Operations, Run, Runs
from bot.core.labels import ModelInfo
from bot.core.model_versions import LabelMetrics, ModelCatalog, ModelVersion
from bot.core.ports import Notice, Outbox, PostedMessage
from bot.core.pricing import Prices
from bot.core.training_data import ImageStore, S3Uri

log = logging.getLogger(__package__)  # the fleet logs as "bot.core.fleet"


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
    """Rekognition's datasets and training (the adapter: `bot.adapters.rekognition_training`)."""

    async def project_datasets(self) -> list[DatasetInfo]: ...

    async def describe_dataset(self, arn: str) -> DatasetInfo: ...

    async def create_dataset(self, dataset_type: str, manifest: tuple[str, str] | None) -> str:
        """Create the TRAIN (from a manifest: (bucket, key)) or an empty TEST dataset."""
        ...

    async def delete_dataset(self, arn: str) -> None: ...

    async def distribute(self, train_arn: str, test_arn: str) -> None: ...

    async def create_version(self, name: str, output_bucket: str, output_prefix: str) -> str: ...

    async def evaluation(self, summary: tuple[str, str]) -> Evaluation: ...


class Serving(Protocol):
    """Which model the bot answers with; the lifecycle switches it when a version runs."""

    def current(self) -> ModelInfo: ...

    def version_arn(self) -> str | None: ...

    def has_fallback(self) -> bool:
        """Whether the local model answers while the Rekognition version isn't running."""
        ...

    async def serve(self, version_arn: str) -> None:
        """Answer with `version_arn` from now on (and remember it, where stored)."""
        ...

    def stopped(self, version_arn: str) -> None: ...


class RouterServing:
    """`Serving` on the `ModelRouter`: the primary becomes a classifier on the running version."""

    def __init__(self, router: Any, make_primary: Callable[[str], Any]) -> None:
        self.router = router
        self.make_primary = make_primary

    def current(self) -> ModelInfo:
        return self.router.model

    def version_arn(self) -> str | None:
        return getattr(self.router.primary, "version_arn", None)

    def has_fallback(self) -> bool:
        return bool(self.router.fallback)

    async def serve(self, version_arn: str) -> None:
        self.switch(version_arn)

    def switch(self, version_arn: str) -> None:
        """Switch this instance's router only."""
        primary = self.router.primary
        if primary is not None and hasattr(primary, "version_arn"):
            primary.version_arn = version_arn
        else:
            self.router.primary = self.make_primary(version_arn)
        self.router.set_primary_running(True)
        log.info("serving.switched", extra={"version_arn": version_arn})

    def stopped(self, version_arn: str) -> None:
        if self.version_arn() == version_arn:
            self.router.set_primary_running(False)


@dataclass(frozen=True)
class LifecycleConfig:
    project_arn: str | None = None
    region: str | None = None
    output: S3Uri | None = None  # where manifests go and training writes its output
    poll_seconds: float = 30.0
    max_units: int = 10
    ops_channel: str | None = None
    min_images_per_label: int = 10
    serve_running_on_start: bool = False  # project set without a version: serve what runs

    @property
    def project_name(self) -> str:
        if not self.project_arn:
            return ""
        return project_name(self.project_arn)


OPERATION_LEASE = timedelta(minutes=2)  # renewed every 40 s while its command runs


class GuardStops(Protocol):
    """Where a stop the cost guard asked for is reported (in its alert's thread)."""

    async def stopped(self, op: Operation, run: Run | None, now: datetime) -> None: ...
    async def not_stopped(self, op: Operation, reason: str) -> None: ...


def aws_error(exc: BaseException) -> str:
    """A readable sentence for an AWS failure (botocore's ClientError, read by duck typing)."""
    if isinstance(exc, UserFacingError):
        return exc.reply
    error = getattr(exc, "response", {}) or {}
    details = error.get("Error", {}) if isinstance(error, dict) else {}
    code = details.get("Code", "")
    message = details.get("Message", "")
    name = type(exc).__name__
    if code in ("AccessDeniedException", "AccessDenied", "UnrecognizedClientException"):
        return f"AWS refused the bot's credentials ({code}: {message}). Check its IAM policy."
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return "The bot has no AWS credentials configured."
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"):
        return "I couldn't reach AWS just now; please try again in a few minutes."
    if code:
        return f"{code}: {message}" if message else code
    return f"{name}: {exc}" if str(exc) else name


def reply(text: str, tone: str = "info") -> LifecycleReply:
    return LifecycleReply(text=text, tone=tone)


@dataclass
class VersionSnapshot:
    """The project's versions as one DescribeProjectVersions call saw them, by name."""

    by_name: dict[str, ModelVersion] = field(default_factory=dict)

    @classmethod
    def of(cls, versions: Sequence[ModelVersion]) -> VersionSnapshot:
        return cls({v.name: v for v in versions})

    def find(self, name_or_arn: str) -> ModelVersion | None:
        found = self.by_name.get(name_or_arn)
        if found is None:
            found = next((v for v in self.by_name.values() if v.arn == name_or_arn), None)
        return found

    def newest_first(self) -> list[ModelVersion]:
        epoch = datetime.min
        return sorted(
            self.by_name.values(),
            key=lambda v: (v.created.replace(tzinfo=None) if v.created else epoch, v.name),
            reverse=True,
        )


@dataclass
class LifecycleContext:
    config: LifecycleConfig
    catalog: ModelCatalog | None  # None: the local model only (no Rekognition project)
    training: TrainingBackend | None
    images: ImageStore | None
    ops: Operations
    runs: Runs
    audit: Audit
    prices: Prices
    outbox: Outbox
    clock: Clock
    serving: Serving
    model_card: Callable[[], dict[str, Any] | None]
    # Lines from the cost guard's meter (idle time, snooze, auto-stop) for /cxr status.
    meter: Callable[[], Awaitable[list[str]]] = field(default=lambda: _no_lines())
    # The cost guard, told when one of its stops is confirmed or doesn't take effect.
    guard_stops: GuardStops | None = None
    evaluations: dict[str, Evaluation] = field(default_factory=dict)  # by version ARN
    in_command: set[int] = field(default_factory=set)  # ops whose command is still running here
    # Operation leases: while a command (on any instance) talks to AWS, its operation is
    # leased to that instance and the poller leaves it alone; None: one instance only.
    leases: Leases | None = None
    owner: str = "this-instance"

    # --- reading Rekognition --------------------------------------------------------------
    async def versions(self) -> VersionSnapshot:
        assert self.catalog is not None
        return VersionSnapshot.of(await self.catalog.versions())

    async def versions_or_reply(self) -> VersionSnapshot | LifecycleReply:
        """The versions, or the reply a command gives when Rekognition can't be read."""
        try:
            return await self.versions()
        except Exception as exc:
            return reply(f"I couldn't read the model versions: {aws_error(exc)}", "error")

    def rekognition_only(self, action: str) -> Notice:
        return reply(
            f"`/cxr {action}` manages a Rekognition Custom Labels model, and this bot runs only "
            f"its local model ({self.serving.current().describe()}). To use Rekognition, an "
            "admin sets CXR_PROJECT_ARN and AWS_REGION (see the README).",
            "refused",
        )

    # --- operations -----------------------------------------------------------------------
    @asynccontextmanager
    async def commanding(self, op_id: int) -> AsyncIterator[None]:
        """While the command that claimed `op_id` talks to AWS, the poller (on any instance)
        leaves it alone: the operation is leased to this instance, renewed until done."""
        self.in_command.add(op_id)
        key = f"operation:{op_id}"
        renewing: asyncio.Task[None] | None = None
        if self.leases is not None:
            await self.leases.acquire(key, self.owner, self.clock.now(), OPERATION_LEASE)
            renewing = asyncio.create_task(self._renew(key), name="operation lease")
        try:
            yield
        finally:
            self.in_command.discard(op_id)
            if renewing is not None:
                renewing.cancel()
            if self.leases is not None:
                await self.leases.release([key], self.owner)

    async def _renew(self, key: str) -> None:
        assert self.leases is not None
        while True:
            await self.clock.sleep(OPERATION_LEASE.total_seconds() / 3)
            await self.leases.acquire(key, self.owner, self.clock.now(), OPERATION_LEASE)

    async def commanded_elsewhere(self, op: Operation) -> bool:
        """Whether another instance's command still holds the operation."""
        if self.leases is None:
            return False
        lease = await self.leases.holder(f"operation:{op.id}")
        return (
            lease is not None and lease.owner != self.owner and not lease.expired(self.clock.now())
        )

    def busy(self, op: Operation, asker: str, what: str, **more: Any) -> Busy:
        """Say what `op` is doing, for whom and since when, instead of asking AWS again."""
        return Busy(
            version_name=op.version_name,
            what=what,
            by=op.user,
            asker=asker,
            age_seconds=(self.clock.now() - op.started_at).total_seconds(),
            channel=op.channel,
            **more,
        )

    async def patient(self, op: Operation) -> bool:
        """Tolerate a few unexpected readings (DescribeProjectVersions can lag a request)."""
        seen = int(op.data.get("unexpected", 0)) + 1
        if seen >= UNEXPECTED_READINGS:
            return False
        await self.ops.update(op.id, data={"unexpected": seen})
        return True

    async def finish_quietly(self, op: Operation, result: str) -> None:
        """Close and audit the operation; its outcome is someone else's to post."""
        now = self.clock.now()
        await self.ops.finish(op.id, now, result)
        await self.audit.record(now, op.user, op.kind, op.version_name, result)

    async def finish(self, op: Operation, result: str, notice: Notice) -> None:
        """Close the operation, record it, and post its outcome where it was asked for."""
        now = self.clock.now()
        await self.ops.finish(op.id, now, result)
        await self.audit.record(now, op.user, op.kind, op.version_name, result)
        log.info(
            "lifecycle.finished",
            extra={"kind": op.kind, "version": op.version_name, "result": result},
        )
        await self.post(op.channel, notice)

    async def post(self, channel: str, notice: Notice) -> PostedMessage | None:
        """Post in `channel`; if Slack refuses (e.g. the bot was removed), in the ops channel."""
        for target in dict.fromkeys([channel, self.config.ops_channel]):
            if not target:
                continue
            try:
                return await self.outbox.post(target, notice)
            except Exception as exc:
                log.warning(
                    "lifecycle.post_failed", extra={"channel": target, "error": type(exc).__name__}
                )
        return None

    # --- serving --------------------------------------------------------------------------
    async def sync(self, snapshot: VersionSnapshot) -> None:
        """Keep the serving version in line with what Rekognition says. (Runs started or
        stopped outside the bot are the cost guard's to meter: it watches every version.)"""
        serving = self.serving.version_arn()
        running = [v for v in snapshot.newest_first() if v.running]
        if running and self.config.serve_running_on_start:
            if serving is None or all(v.arn != serving for v in running):
                await self.serving.serve(running[0].arn)
        elif serving and any(v.arn == serving and not v.running for v in snapshot.by_name.values()):
            self.serving.stopped(serving)


async def _no_lines() -> list[str]:
    return []
