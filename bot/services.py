"""The composition root: builds the domain services and their adapters from the settings.

Everything the listeners, commands and transports need hangs off one `Services` object, so
tests and the local shell can build the very same graph with their own Slack and AWS clients.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from PIL import Image

from bot.core.clock import Clock, SystemClock
from bot.core.fleet.state import Audit, Runs
from bot.core.intake import Intake
from bot.core.leadership import Leadership, LeaderStore
from bot.core.learning.export import Exporter
from bot.core.learning.reviewing import Reviewing
from bot.core.leases import LeaseTerms
from bot.core.model_versions import ModelCatalog
from bot.core.ports import Classifier, FileDescriber, FileFetcher, Outbox
from bot.core.pricing import Prices
from bot.core.refetch import RefetchingFetcher
from bot.core.routing import ModelRouter
from bot.settings import Settings
from bot.state.db import Database
from bot.state.leases import LeaseStore
from bot.state.reviews import ReviewStore
from bot.state.serving import ServingStore
from bot.state.store import SqliteStore
from bot.state.stores import coordination_stores
from bot.state.uploads import UploadStore

if TYPE_CHECKING:  # for annotations only; built (and imported) by the _attach_ functions
    from bot.core.fleet.guard import CostGuard
    from bot.core.fleet.lifecycle import Lifecycle
    from bot.core.learning.promote import Promoter

log = logging.getLogger(__name__)


@dataclass
class AwsClients:
    """boto3 clients, made from the settings on first use (tests pass Stubber-wrapped ones)."""

    settings: Settings
    overrides: dict[str, Any] = field(default_factory=dict)

    def get(self, service: str) -> Any:
        if service not in self.overrides:
            from bot.adapters.aws import client

            self.overrides[service] = client(service, self.settings)
        return self.overrides[service]

    @property
    def rekognition(self) -> Any:
        return self.get("rekognition")

    @property
    def s3(self) -> Any:
        return self.get("s3")

    @property
    def cloudwatch(self) -> Any:
        return self.get("cloudwatch")


BackgroundJob = Callable[[], Awaitable[None]]


@dataclass
class Services:
    settings: Settings
    clock: Clock
    db: Database
    aws: AwsClients
    outbox: Outbox
    uploads: UploadStore
    router: ModelRouter
    intake: Intake
    prices: Prices
    store: SqliteStore  # all of the fleet's state (`bot.core.fleet.state.Store`)
    runs: Runs
    audit: Audit
    models: ModelCatalog | None  # the Rekognition project's versions; None without a project
    reviews: ReviewStore
    serving: ServingStore  # which version serves (a promotion wins over the setting)
    reviewing: Reviewing  # reviews of verdicts and the figures they make
    exporter: Exporter  # reviewed images out for retraining (`cxr export`)
    lifecycle: Lifecycle | None = None  # /cxr status|start|stop|train: _attach_lifecycle
    cost_guard: CostGuard | None = None  # idle alerts, auto-stop…: _attach_cost_guard
    leader_store: LeaderStore | None = None  # who leads the replicas (see bot.core.leadership)
    promoter: Promoter | None = None  # /cxr promote: _attach_promoter
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    background: list[BackgroundJob] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        """Resume unanswered uploads and start the background watchers."""
        resumed = await self.intake.resume()
        if resumed:
            log.info("intake.resumed", extra={"uploads": resumed})
        for job in [self.intake.keep_leases, *self.background]:
            self._tasks.append(
                asyncio.create_task(_forever(job), name=getattr(job, "__name__", "job"))
            )

    async def stop(self, drain_seconds: float = 20.0) -> None:
        """Stop watchers, give uploads in flight a moment to finish, close connections."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.intake.stop(drain_seconds)
        for close in self.closers:
            await close()
        await asyncio.to_thread(self.db.close)


async def _forever(job: BackgroundJob) -> None:
    """Run a background job; if it crashes, log it and start it again after a pause."""
    while True:
        try:
            await job()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background.crashed", extra={"job": getattr(job, "__name__", "job")})
            await asyncio.sleep(30)


def default_guard(settings: Settings | None = None) -> Callable[[Image.Image], None]:
    from bot.core.xray_guard import check_chest_xray

    if settings is None or settings.cxr_guard == "heuristic":
        return check_chest_xray
    from bot.ml.film_guard import FilmGuard

    try:
        return FilmGuard(settings.cxr_local_model_path)
    except (FileNotFoundError, ValueError) as exc:  # a custom model without its fitted guard
        log.warning("guard.heuristic_only", extra={"reason": str(exc)})
        return check_chest_xray


def open_database(settings: Settings) -> Database:
    """PostgreSQL when CXR_DATABASE_URL is set (replicas share it; no SQLite file is made),
    else the SQLite file at CXR_DB_PATH. Both serve the same interface to every store."""
    if settings.cxr_database_url is not None:
        from bot.state.postgres.database import PostgresDatabase

        return PostgresDatabase(settings.cxr_database_url.get_secret_value())  # type: ignore[return-value]
    # A claim gives up after about 2 s (then Slack retries); waiting longer on a lock only
    # holds up the statements queued behind it.
    return Database(settings.cxr_db_path, busy_timeout_s=2.0)


def build_local_classifier(settings: Settings) -> Classifier:
    from bot.adapters.onnx_classifier import OnnxClassifier

    return OnnxClassifier(
        settings.cxr_local_model_path,
        heatmaps=settings.cxr_heatmaps,
        heatmap_normal=settings.cxr_heatmap_normal,
    )


async def initial_served_version(settings: Settings, serving: ServingStore) -> str | None:
    """The version to serve at start: the stored one (a promotion, or what last served), else
    `CXR_PROJECT_VERSION_ARN`, which is only the initial value."""
    if not settings.cxr_project_arn:
        return None
    stored = await serving.served()
    project = settings.cxr_project_arn.rsplit("/", 1)[0]
    if stored is not None and stored.version_arn.startswith(project):
        return stored.version_arn
    return settings.cxr_project_version_arn


async def build_services(
    settings: Settings,
    *,
    outbox: Outbox,
    fetcher: FileFetcher,
    describer: FileDescriber | None = None,
    clock: Clock | None = None,
    aws: dict[str, Any] | None = None,
    local: Classifier | None = None,
    guard: Callable[[Image.Image], None] | None = None,
) -> Services:
    """Wire the domain. `local` and `aws` let tests and benchmarks swap adapters."""
    clock = clock or SystemClock()
    db = await asyncio.to_thread(open_database, settings)  # migrations: off the loop
    clients = AwsClients(settings, dict(aws or {}))
    shared = coordination_stores(db)
    store = SqliteStore(db)  # on PostgreSQL too: the same SQL, translated
    store.uploads, store.leases = shared.uploads, shared.leases
    uploads = store.uploads

    reviews = ReviewStore(db)
    serving = ServingStore(db)
    audit = store.audit
    primary: Classifier | None = None
    served = await initial_served_version(settings, serving)
    if served:
        from bot.adapters.rekognition import RekognitionClassifier

        primary = RekognitionClassifier(clients.rekognition, served)
    if local is None and (
        primary is None or settings.cxr_local_fallback or settings.cxr_both_models
    ):
        local = build_local_classifier(settings)
    router = ModelRouter(
        primary,
        local,
        fallback=settings.cxr_local_fallback,
        clock=clock,
        tolerance=settings.cxr_score_sum_tolerance,
    )
    classifier: Classifier = router
    if settings.cxr_both_models and settings.cxr_project_arn:
        from bot.core.learning.both_models import BothModels

        classifier = BothModels(router)
    models: ModelCatalog | None = None
    if settings.cxr_project_arn:
        from bot.adapters.rekognition_models import RekognitionModels

        models = RekognitionModels(clients.rekognition, settings.cxr_project_arn)

    intake = Intake(
        store=uploads,
        leases=store.leases,
        fetcher=fetcher,
        describer=describer,
        lease=LeaseTerms(timedelta(seconds=settings.cxr_upload_lease_seconds)),
        classifier=classifier,
        outbox=outbox,
        clock=clock,
        guard=guard or default_guard(settings),
        threshold=settings.cxr_confidence_threshold,
        max_bytes=settings.max_upload_bytes,
        max_pixels=settings.cxr_max_pixels,
        concurrency=settings.cxr_concurrency,
        answers=reviews,
        reviewable=bool(settings.cxr_reviewers),
        refuse_phi=settings.cxr_refuse_phi,
    )
    services = Services(
        settings=settings,
        clock=clock,
        db=db,
        aws=clients,
        outbox=outbox,
        uploads=uploads,
        router=router,
        intake=intake,
        prices=Prices(settings.cxr_price_inference_hour, settings.cxr_price_training_hour),
        store=store,
        runs=store.runs,
        audit=store.audit,
        models=models,
        reviews=reviews,
        serving=serving,
        reviewing=Reviewing(reviews, audit, clock),
        exporter=Exporter(
            reviews,
            RefetchingFetcher(fetcher, describer),
            clock,
            max_bytes=settings.max_upload_bytes,
            max_pixels=settings.cxr_max_pixels,
        ),
    )
    services.leader_store = shared.leader
    if shared.close is not None:
        services.closers.append(shared.close)
    close = getattr(fetcher, "close", None)  # the Slack fetcher holds an HTTP session
    if close is not None:
        services.closers.append(close)
    _attach_lifecycle(services)
    _attach_cost_guard(services)
    _attach_promoter(services, RefetchingFetcher(fetcher, describer), local)
    return services


def _attach_lifecycle(services: Services) -> None:
    """Model lifecycle (train, start, stop, operations in flight)."""
    from bot.core.fleet.lifecycle import Lifecycle, LifecycleConfig
    from bot.core.learning.serving import StoredServing
    from bot.core.training_data import S3Uri

    settings = services.settings
    aws = services.aws
    training = images = None
    if services.models is not None and settings.cxr_project_arn:
        from bot.adapters.rekognition_models import RekognitionTraining
        from bot.adapters.s3_images import S3Images

        images = S3Images(lambda: aws.s3)
        training = RekognitionTraining(aws.rekognition, settings.cxr_project_arn, images)

    def make_primary(version_arn: str) -> Classifier:
        from bot.adapters.rekognition import RekognitionClassifier

        return RekognitionClassifier(aws.rekognition, version_arn)

    def model_card() -> dict[str, Any] | None:
        try:
            from bot.ml.model_card import load_model_card

            path = settings.cxr_local_model_path
            return load_model_card(path.parent if path else None).raw
        except Exception as exc:  # no card, or one this code can't read: say so in status
            log.info("lifecycle.model_card_unavailable", extra={"error": str(exc)})
            return None

    output = settings.cxr_training_output_s3
    lifecycle = Lifecycle(
        config=LifecycleConfig(
            project_arn=settings.cxr_project_arn,
            region=settings.aws_region,
            output=S3Uri.parse(output) if output else None,
            poll_seconds=settings.cxr_lifecycle_poll_seconds,
            max_units=settings.cxr_max_inference_units,
            ops_channel=settings.cxr_ops_channel,
            min_images_per_label=settings.cxr_train_min_images_per_label,
            serve_running_on_start=bool(
                settings.cxr_project_arn and services.router.primary is None
            ),
        ),
        catalog=services.models,
        training=training,
        images=images,
        store=services.store,
        prices=services.prices,
        outbox=services.outbox,
        clock=services.clock,
        serving=StoredServing(services.router, make_primary, services.serving, services.clock),
        model_card=model_card,
    )
    services.lifecycle = lifecycle
    services.background.append(lifecycle.resume)
    services.closers.append(lifecycle.close)


def _attach_cost_guard(services: Services) -> None:
    """Cost guard (idle alerts, auto-stop, schedule, spend summary)."""
    if services.models is None:
        return  # no Rekognition project: nothing bills by the hour
    from bot.adapters.cloudwatch_usage import CloudWatchUsage
    from bot.core.fleet.guard import CostGuard, GuardConfig
    from bot.core.usage import NoUsage, OwnTraffic

    settings = services.settings
    aws = services.aws
    router = services.router

    def serving_version() -> str | None:
        return getattr(router.primary, "version_arn", None) or settings.cxr_project_version_arn

    lifecycle = services.lifecycle
    assert lifecycle is not None, "attached first, local-only too"
    guard = CostGuard(
        catalog=services.models,
        usage=CloudWatchUsage(lambda: aws.cloudwatch)
        if settings.cxr_cloudwatch_usage
        else NoUsage(),
        own=OwnTraffic(services.uploads),
        store=services.store,
        prices=services.prices,
        outbox=services.outbox,
        clock=services.clock,
        config=GuardConfig.from_settings(settings),
        serving_version=serving_version,
        classifications=services.uploads,
        lifecycle=lifecycle,
    )
    services.cost_guard = guard
    if settings.cxr_auto_stop_minutes and not (
        settings.cxr_sole_client or settings.cxr_owned_versions
    ):
        log.warning(  # the alerts say so too, per version
            "cost_guard.auto_stop_blind",
            extra={"hint": "set CXR_SOLE_CLIENT or CXR_OWNED_VERSIONS for auto-stop to act"},
        )
    interval = guard.config.interval
    leader = None
    if services.leader_store is not None:
        # Followers ask every ttl/3, so a dead leader is replaced within 4/3 ttl: one
        # poll interval. A clean stop releases the term at once (the poller's close).
        leader = Leadership(
            services.leader_store,
            "fleet",
            services.intake.owner,
            services.clock,
            interval * 3 / 4,
        )
        guard.lead_with(leader)
        services.background.append(leader.run)
        services.closers.insert(0, leader.release)  # before the database closes
    poller = lifecycle.join_guard(guard, owner=services.intake.owner, leader=leader)
    services.background.remove(lifecycle.resume)
    services.background.append(poller.run)


def _attach_promoter(services: Services, fetcher: FileFetcher, local: Classifier | None) -> None:
    """Blue/green promotion of a Rekognition version (`/cxr promote`)."""
    if services.models is None or services.lifecycle is None:
        return
    from bot.core.learning.promote import Promoter

    settings = services.settings
    aws = services.aws
    training = services.lifecycle.training

    def make_classifier(version_arn: str) -> Classifier:
        from bot.adapters.rekognition import RekognitionClassifier

        return RekognitionClassifier(aws.rekognition, version_arn)

    async def evaluation(version: Any) -> Any:
        if training is None or version.evaluation_summary_s3 is None:
            return None
        return await training.evaluation(version.evaluation_summary_s3)

    promoter = Promoter(
        catalog=services.models,
        serving=services.lifecycle.serving,
        store=services.serving,
        reviews=services.reviews,
        runs=services.runs,
        audit=services.audit,
        outbox=services.outbox,
        clock=services.clock,
        fetcher=fetcher,
        served_classifier=services.router,
        make_classifier=make_classifier,
        evaluation=evaluation,
        min_reviewed=settings.cxr_promote_min_reviewed,
        max_bytes=settings.max_upload_bytes,
        max_pixels=settings.cxr_max_pixels,
        poll_seconds=settings.cxr_lifecycle_poll_seconds,
        leases=LeaseStore(services.db),
        owner=services.intake.owner,
        tolerance=settings.cxr_score_sum_tolerance,
    )
    services.promoter = promoter
    services.background.append(promoter.run)
    services.closers.append(promoter.close)
