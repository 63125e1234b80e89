"""The promoter against botocore Stubber sequences: every Rekognition call, in order, with its
parameters, for a better candidate that must be started, a worse one that runs already (two
confirmations, no start), and a restart while the candidate starts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from botocore.stub import Stubber

from bot.adapters.rekognition import RekognitionClassifier
from bot.adapters.rekognition_models import RekognitionModels
from bot.core.clock import FakeClock
from bot.core.learning.promote import PromoteProposal, Promoter, PromoteReply
from bot.core.learning.serving import StoredServing
from bot.core.routing import ModelRouter
from bot.slack.blocks import render
from bot.state.db import Database
from bot.state.reviews import ReviewStore
from bot.state.serving import ServingStore
from bot.state.store import AuditLog, RunStore
from tests.harness import PROJECT_ARN, rekognition_client
from tests.test_lifecycle_support import LocalModel, RecordingOutbox, arn, version

SERVED, CANDIDATE = "cxr.v2", "cxr.v3"
ADMIN, LAB = "U0ADMIN01", "C0LAB0001"
POLL = 30.0


def described(*versions: dict[str, Any]) -> dict[str, Any]:
    return {"ProjectVersionDescriptions": list(versions)}


def served(status: str = "RUNNING") -> dict[str, Any]:
    return version(SERVED, status, EvaluationResult={"F1Score": 0.90}, MinInferenceUnits=1)


def candidate(status: str, f1: float) -> dict[str, Any]:
    return version(CANDIDATE, status, EvaluationResult={"F1Score": f1})


class Rig:
    """A promoter on a Stubber-wrapped Rekognition client and a SQLite file."""

    @classmethod
    async def open(cls, db_path, client, clock: FakeClock) -> Rig:
        db = await asyncio.to_thread(Database, db_path)
        stored = await ServingStore(db).served()
        return cls(db, stored.version_arn if stored else arn(SERVED), client, clock)

    def __init__(self, db: Database, start_arn: str, client, clock: FakeClock) -> None:
        self.db = db
        self.clock = clock
        self.outbox = RecordingOutbox()
        self.store = ServingStore(self.db)
        self.router = ModelRouter(
            RekognitionClassifier(client, start_arn), LocalModel(), fallback=True, clock=clock
        )
        serving = StoredServing(
            self.router, lambda a: RekognitionClassifier(client, a), self.store, clock
        )
        self.runs = RunStore(self.db)
        self.promoter = Promoter(
            catalog=RekognitionModels(client, PROJECT_ARN),
            serving=serving,
            store=self.store,
            reviews=ReviewStore(self.db),
            runs=self.runs,
            audit=AuditLog(self.db),
            outbox=self.outbox,
            clock=clock,
            fetcher=None,  # type: ignore[arg-type]  # no reviewed cases: nothing to fetch
            served_classifier=self.router,
            make_classifier=lambda a: RekognitionClassifier(client, a),
            evaluation=None,
            min_reviewed=30,
            max_bytes=1 << 20,
            max_pixels=1 << 24,
            poll_seconds=POLL,
        )

        self.task: asyncio.Task[None] | None = None

    def start(self) -> Rig:
        """The promoter's background job, as the bot runs it."""
        self.task = asyncio.create_task(self.promoter.run())
        return self

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.promoter.close()
        await asyncio.to_thread(self.db.close)


@pytest.fixture
def rekognition():
    client = rekognition_client()
    with Stubber(client) as stubber:
        yield client, stubber


def expect_versions(stubber: Stubber, *versions: dict[str, Any]) -> None:
    stubber.add_response(
        "describe_project_versions", described(*versions), {"ProjectArn": PROJECT_ARN}
    )


def drained(stubber: Stubber) -> bool:
    try:
        stubber.assert_no_pending_responses()
    except AssertionError:
        return False
    return True


async def until(condition, what: str) -> None:
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_better_candidate_is_started_and_served_only_once_running(rekognition, tmp_path):
    client, stubber = rekognition
    rig = (await Rig.open(tmp_path / "cxr.db", client, FakeClock())).start()
    try:
        expect_versions(stubber, served(), candidate("TRAINING_COMPLETED", 0.95))
        proposal = await rig.promoter.propose(ADMIN, CANDIDATE)
        assert isinstance(proposal, PromoteProposal) and not proposal.worse
        assert proposal.comparison.candidate.value == 0.95

        expect_versions(stubber, served(), candidate("TRAINING_COMPLETED", 0.95))
        stubber.add_response(
            "start_project_version",
            {"Status": "STARTING"},
            {"ProjectVersionArn": arn(CANDIDATE), "MinInferenceUnits": 1},
        )
        expect_versions(stubber, served(), candidate("STARTING", 0.95))  # the first poll
        started = await rig.promoter.confirm(ADMIN, LAB, arn(CANDIDATE), 1, 1)
        assert isinstance(started, PromoteReply) and started.kind == "started"
        await until(lambda: drained(stubber), "the first poll")
        assert rig.router.primary.version_arn == arn(SERVED)  # not yet

        expect_versions(stubber, served(), candidate("RUNNING", 0.95))
        await rig.clock.advance(POLL)
        await until(lambda: rig.outbox.posts, "the switch")
        [(channel, switched)] = rig.outbox.posts
        assert channel == LAB and switched.kind == "switched"
        assert switched.previous_arn == arn(SERVED)
        assert rig.router.primary.version_arn == arn(CANDIDATE)
        assert (await rig.store.served()).version_arn == arn(CANDIDATE)
        assert await rig.store.in_flight() is None
        stubber.assert_no_pending_responses()
    finally:
        await rig.close()


async def test_a_start_aws_refuses_is_said_and_audited_by_its_code(rekognition, tmp_path):
    client, stubber = rekognition
    rig = await Rig.open(tmp_path / "cxr.db", client, FakeClock())
    try:
        expect_versions(stubber, served(), candidate("TRAINING_COMPLETED", 0.95))
        stubber.add_client_error(
            "start_project_version", "AccessDeniedException", "not allowed", 400
        )
        failed = await rig.promoter.confirm(ADMIN, LAB, arn(CANDIDATE), 1, 1)
        assert isinstance(failed, PromoteReply) and failed.kind == "error"
        assert render(failed).text == (
            f"I couldn't start *{CANDIDATE}*: AWS refused the bot's credentials "
            "(AccessDeniedException: not allowed). Check its IAM policy."
        )
        [entry] = await AuditLog(rig.db).recent(1)
        assert entry.result == "failed: AccessDeniedException"
        assert rig.router.primary.version_arn == arn(SERVED)
        stubber.assert_no_pending_responses()
    finally:
        await rig.close()


async def test_worse_running_candidate_needs_two_confirmations_and_no_start(rekognition, tmp_path):
    client, stubber = rekognition
    rig = await Rig.open(tmp_path / "cxr.db", client, FakeClock())
    try:
        expect_versions(stubber, served(), candidate("RUNNING", 0.80))
        proposal = await rig.promoter.propose(ADMIN, CANDIDATE)
        assert proposal.worse and proposal.comparison.confirmations_needed == 2

        expect_versions(stubber, served(), candidate("RUNNING", 0.80))
        second = await rig.promoter.confirm(
            ADMIN, LAB, arn(CANDIDATE), 1, 1, worse=True, served_name=SERVED, summary="x"
        )
        assert isinstance(second, PromoteProposal) and second.step == 2
        assert rig.router.primary.version_arn == arn(SERVED)

        expect_versions(stubber, served(), candidate("RUNNING", 0.80))
        done = await rig.promoter.confirm(ADMIN, LAB, arn(CANDIDATE), 2, 1, worse=True)
        assert isinstance(done, PromoteReply) and done.kind == "switched"
        assert rig.router.primary.version_arn == arn(CANDIDATE)
        # both versions bill until the old one is stopped: the candidate's run is open
        assert arn(CANDIDATE) in {r.version_arn for r in await rig.runs.open_runs()}
        stubber.assert_no_pending_responses()  # no StartProjectVersion was made
    finally:
        await rig.close()


async def test_a_restart_while_the_candidate_starts(rekognition, tmp_path):
    client, stubber = rekognition
    first = (await Rig.open(tmp_path / "cxr.db", client, FakeClock())).start()
    expect_versions(stubber, served(), candidate("STOPPED", 0.95))
    stubber.add_response(
        "start_project_version",
        {"Status": "STARTING"},
        {"ProjectVersionArn": arn(CANDIDATE), "MinInferenceUnits": 1},
    )
    expect_versions(stubber, served(), candidate("STARTING", 0.95))
    await first.promoter.confirm(ADMIN, LAB, arn(CANDIDATE), 1, 1)
    await until(lambda: drained(stubber), "the first poll")
    await first.close()  # the bot goes down; the promotion stays open in SQLite

    second = await Rig.open(tmp_path / "cxr.db", client, FakeClock())
    try:
        assert second.router.primary.version_arn == arn(SERVED)
        expect_versions(stubber, served(), candidate("RUNNING", 0.95))
        second.start()  # picks up the promotion left open
        await until(lambda: second.outbox.posts, "the switch after the restart")
        assert second.router.primary.version_arn == arn(CANDIDATE)
        stubber.assert_no_pending_responses()  # started once, before the restart
    finally:
        await second.close()
    third = await Rig.open(tmp_path / "cxr.db", client, FakeClock())
    try:
        assert third.router.primary.version_arn == arn(CANDIDATE)  # the promotion outlives it
    finally:
        await third.close()


async def test_cases_exported_for_training_never_enter_the_comparison(rekognition, tmp_path):
    import json
    from datetime import timedelta

    from bot.core.review.records import CaseKey, Review, ReviewLabel

    client, _ = rekognition
    rig = await Rig.open(tmp_path / "cxr.db", client, FakeClock())
    try:
        now = rig.clock.now()
        reviews = ReviewStore(rig.db)

        def seed() -> None:  # on a worker thread: the database refuses SQL on the loop
            for i, label in enumerate(
                [ReviewLabel.NORMAL, ReviewLabel.PNEUMONIA, ReviewLabel.NORMAL]
            ):
                ts = f"1760000000.00000{i}"
                ref = {"file_id": f"F{i}", "name": "x.png", "mimetype": "image/png", "size": 1}
                rig.db.execute(
                    "INSERT INTO uploads (channel, ts, thread_ts, user, files, received_at)"
                    " VALUES ('C1', ?, ?, 'U1', ?, ?)",
                    (ts, ts, json.dumps([{**ref, "url": "u"}]), now.isoformat()),
                )
                reviews.record(Review(CaseKey("C1", ts, f"F{i}"), "U9", label, now))
            reviews.mark_exported(
                [CaseKey("C1", "1760000000.000001", "F1")], "s3://b/p/", now + timedelta(hours=1)
            )

        await asyncio.to_thread(seed)
        cases = await rig.promoter._reviewed_cases()
        assert sorted(ref.file_id for ref, _ in cases) == ["F0", "F2"]
    finally:
        await rig.close()
