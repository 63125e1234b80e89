"""The lifecycle service: Rekognition through botocore's Stubber (realistic status sequences),
S3 in moto (a folder tree of synthetic X-rays), a fake clock (no real waiting)."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
import pytest
from moto import mock_aws

from bot.core.fleet.notices import (
    Busy,
    ModelRunning,
    ModelStartFailed,
    ModelStopped,
    ScheduleNotice,
    StartProposal,
    StartRequested,
    StopRequested,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRefused,
    TrainingStarted,
)
from bot.core.fleet.state import START, TRAIN
from bot.core.fleet.status import StatusReport
from bot.core.model_versions import ModelVersion
from bot.slack.blocks import render
from bot.slack.fleet import said
from tests.synthetic import chest_xray, jpeg_bytes
from tests.test_lifecycle_support import (
    DATA_BUCKET,
    OUTPUT_BUCKET,
    TEST_DATASET,
    TRAIN_DATASET,
    arn,
    build,
    completed,
    expect_dataset,
    expect_project,
    expect_training_setup,
    expect_versions,
    make_buckets,
    poll,
    put_summary,
    put_tree,
    version,
)

ADMIN = "U0ADMIN01"
LAB = "C0LAB0001"
SOURCE = f"s3://{DATA_BUCKET}/xrays"


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        make_buckets(client)
        yield client


@pytest.fixture
async def built(tmp_path, rekognition, s3):
    b = build(tmp_path / "cxr.db", rekognition, s3)
    yield b
    await b.lifecycle.close()
    b.db.close()


async def launch_training(built, rekognition, s3, name: str = "v2") -> None:
    put_tree(s3)
    expect_versions(rekognition, completed("v1"))
    expect_project(rekognition)
    reply = await built.lifecycle.train(ADMIN, LAB, SOURCE, name)
    assert isinstance(reply, TrainingStarted) and reply.tone == "ok", said(reply)


# --- train ----------------------------------------------------------------------------------
async def test_train_writes_the_manifest_and_follows_training_to_its_metrics(
    built, rekognition, s3
):
    await launch_training(built, rekognition, s3)

    body = s3.get_object(Bucket=OUTPUT_BUCKET, Key="bot/manifests/v2.manifest")["Body"]
    lines = body.read().decode().splitlines()
    assert len(lines) == 20
    for line in lines:
        record = json.loads(line)
        assert set(record) == {"source-ref", "cxr-label", "cxr-label-metadata"}
        meta = record["cxr-label-metadata"]
        assert meta["type"] == "groundtruth/image-classification"
        assert meta["human-annotated"] == "yes" and meta["confidence"] == 1
        assert meta["creation-date"] == "2026-01-05T09:00:00.000"
        bucket, key = record["source-ref"].removeprefix("s3://").split("/", 1)
        assert bucket == DATA_BUCKET and key.split("/")[1] == meta["class-name"]
        assert record["cxr-label"] == ["Normal", "Pneumonia"].index(meta["class-name"])
        s3.head_object(Bucket=bucket, Key=key)  # every line names an image that exists
    [(channel, progress)] = built.outbox.posts
    assert channel == LAB and isinstance(progress, TrainingProgress)
    assert progress.counts == {"Normal": 10, "Pneumonia": 10} and not progress.replacing

    expect_training_setup(rekognition, "v2")
    await poll(built, 3)  # create the datasets; split them when imported; train when split
    assert (await built.ops.open())[0].phase == "training"
    phases = [n.phase for _, n in built.outbox.updates]
    assert phases == ["creating", "splitting", "training"]
    assert "16 training and 4 test images" in said(built.outbox.updates[-1][1])

    expect_versions(rekognition, completed("v1"), version("v2", "TRAINING_IN_PROGRESS"))
    await poll(built)
    assert not built.outbox.of(TrainingCompleted)

    put_summary(s3, "v2")
    expect_versions(rekognition, completed("v1"), completed("v2", billable=5400))
    await poll(built)
    [(channel, done)] = built.outbox.of(TrainingCompleted)
    assert channel == LAB
    assert "Training v2 finished (asked by U0ADMIN01): F1 0.912." in said(done)
    assert "Normal: precision 87.5%, recall 90.0%; Pneumonia: precision 95.0%, recall 91.0%" in (
        said(done)
    )
    assert "Billable training time 1 h 30 min, an estimated $1.50" in said(done)
    assert "Tested on 4 images, trained on 16" in said(done)
    assert built.outbox.updates[-1][1].done
    assert await built.ops.open() == [] and not built.lifecycle.watching
    assert [(a.action, a.target, a.result) for a in await built.audit.recent(2)] == [
        ("train", "v2", "ok: F1 0.912"),
        ("train", "v2", f"requested (20 images from {SOURCE}/)"),
    ]
    rekognition.stubber.assert_no_pending_responses()


async def test_train_replaces_the_projects_old_datasets(built, rekognition, s3):
    old_train = TRAIN_DATASET.replace("1700000000100", "1600000000000")
    old_test = TEST_DATASET.replace("1700000000101", "1600000000001")
    put_tree(s3)
    expect_versions(rekognition, completed("v1"))
    expect_project(rekognition, (old_train, "TRAIN", "UPDATE_COMPLETE"))
    await built.lifecycle.train(ADMIN, LAB, SOURCE, "v2")
    assert built.outbox.posts[0][1].replacing
    assert "current datasets are replaced" in said(built.outbox.posts[0][1])

    stub = rekognition.stubber
    expect_project(
        rekognition, (old_train, "TRAIN", "UPDATE_COMPLETE"), (old_test, "TEST", "UPDATE_COMPLETE")
    )
    stub.add_response("delete_dataset", {}, {"DatasetArn": old_train})
    stub.add_response("delete_dataset", {}, {"DatasetArn": old_test})
    await poll(built)
    expect_project(rekognition, (old_test, "TEST", "DELETE_IN_PROGRESS"))
    await poll(built)  # still deleting: wait
    assert (await built.ops.open())[0].phase == "datasets"
    expect_training_setup(rekognition, "v2")
    await poll(built, 3)
    assert (await built.ops.open())[0].phase == "training"
    stub.assert_no_pending_responses()


async def test_training_failure_is_posted_with_rekognitions_reason(built, rekognition, s3):
    await launch_training(built, rekognition, s3)
    expect_training_setup(rekognition, "v2")
    await poll(built, 3)
    expect_versions(
        rekognition,
        version("v2", "TRAINING_FAILED", message="The manifest file contains too many errors."),
    )
    await poll(built)
    [(channel, failed)] = built.outbox.of(TrainingFailed)
    assert channel == LAB
    assert said(failed) == (
        "Training v2 failed (asked by U0ADMIN01): The manifest file contains too many errors."
    )
    assert (await built.audit.recent(1))[0].result.startswith("failed: The manifest file")


async def test_a_dataset_that_fails_to_import_ends_the_training(built, rekognition, s3):
    await launch_training(built, rekognition, s3)
    expect_project(rekognition)
    rekognition.stubber.add_response("create_dataset", {"DatasetArn": TRAIN_DATASET})
    rekognition.stubber.add_response("create_dataset", {"DatasetArn": TEST_DATASET})
    await poll(built)
    expect_dataset(rekognition, TRAIN_DATASET, "CREATE_FAILED", message="Manifest has errors")
    expect_dataset(rekognition, TEST_DATASET, "CREATE_COMPLETE")
    await poll(built)
    [(_, failed)] = built.outbox.of(TrainingFailed)
    assert "the TRAIN dataset failed: Manifest has errors" in said(failed)
    assert await built.ops.open() == []


@pytest.mark.parametrize(
    ("setup", "source", "expected"),
    [
        ("none", f"s3://{DATA_BUCKET}/nothing", "is empty: I found no files there"),
        ("one-label", SOURCE, "Only one label has images (Normal: 10)"),
        ("non-images", SOURCE, "Normal/report.pdf"),
        ("tiny", SOURCE, "Normal/tiny.jpeg (40×40)"),
        ("foreign", "s3://cxr-data-eu/xrays", "is in eu-west-1, but the bot's Rekognition"),
    ],
)
async def test_train_refusals_name_the_problem(built, rekognition, s3, setup, source, expected):
    if setup == "one-label":
        put_tree(s3, pneumonia=0)
    elif setup == "non-images":
        put_tree(s3)
        s3.put_object(Bucket=DATA_BUCKET, Key="xrays/Normal/report.pdf", Body=b"%PDF-1.7")
    elif setup == "tiny":
        put_tree(s3)
        tiny = jpeg_bytes(chest_xray(size=(40, 40)))
        s3.put_object(Bucket=DATA_BUCKET, Key="xrays/Normal/tiny.jpeg", Body=tiny)
    elif setup == "foreign":
        put_tree(s3, bucket="cxr-data-eu")
    expect_versions(rekognition, completed("v1"))
    reply = await built.lifecycle.train(ADMIN, LAB, source, "v2")
    assert isinstance(reply, TrainingRefused), said(reply)
    assert expected in said(reply) and expected in render(reply).text
    assert await built.ops.open() == [] and built.outbox.posts == []
    assert (await built.audit.recent(1))[0].result.startswith("refused: ")
    reasons = ", ".join(p.reason for p in reply.problems)  # facts: the reasons, in order
    assert (await built.audit.recent(1))[0].result == f"refused: {reasons}"
    assert not s3.list_objects_v2(Bucket=OUTPUT_BUCKET).get("Contents")  # no manifest
    rekognition.stubber.assert_no_pending_responses()


async def test_train_refuses_a_name_already_used(built, rekognition, s3):
    expect_versions(rekognition, completed("v1"))
    reply = await built.lifecycle.train(ADMIN, LAB, SOURCE, "v1")
    assert reply.tone == "refused" and "`v1` is already used" in said(reply)
    assert (await built.audit.recent(1))[0].action == "train"


async def test_train_without_an_output_location_says_which_setting(tmp_path, rekognition, s3):
    b = build(tmp_path / "cxr.db", rekognition, s3, output=None)
    reply = await b.lifecycle.train(ADMIN, LAB, SOURCE)
    assert "CXR_TRAINING_OUTPUT_S3" in said(reply)


async def test_a_second_train_while_training_says_what_is_happening(built, rekognition, s3):
    await launch_training(built, rekognition, s3)
    await built.clock.advance(600)
    again = await built.lifecycle.train("U0OTHER01", LAB, SOURCE, "v3")
    assert isinstance(again, Busy)
    assert said(again) == (
        "v2 is already training (asked by U0ADMIN01 10 min ago, now creating the project's "
        "datasets from the manifest). One training at a time. I'll post the outcome in C0LAB0001."
    )
    rekognition.stubber.assert_no_pending_responses()  # no AWS call for the second one


async def test_train_while_rekognition_is_training_outside_the_bot(built, rekognition, s3):
    expect_versions(rekognition, version("v1", "TRAINING_IN_PROGRESS"))
    reply = await built.lifecycle.train(ADMIN, LAB, SOURCE, "v2")
    assert reply.tone == "busy" and "v1 is already training" in said(reply)


async def test_default_version_names_are_dated_and_unique(built, rekognition, s3):
    put_tree(s3)
    expect_versions(rekognition, completed("cxr.2026-01-05"))
    expect_project(rekognition)
    reply = await built.lifecycle.train(ADMIN, LAB, SOURCE)
    assert "Training cxr.2026-01-05.2 from" in said(reply)


async def test_a_check_cut_short_by_a_restart_is_reported_after_it(tmp_path, rekognition, s3):
    first = build(tmp_path / "cxr.db", rekognition, s3, serving_arn=arn("v1"))
    await first.ops.claim(
        TRAIN,
        "v2",
        channel=LAB,
        user=ADMIN,
        at=first.clock.now(),
        status="VALIDATING",
        phase="validating",
        data={"source": SOURCE + "/"},
    )
    first.db.close()
    second = build(tmp_path / "cxr.db", rekognition, s3, serving_arn=arn("v1"))
    await second.lifecycle.resume()
    [(channel, failed)] = second.outbox.of(TrainingFailed)
    assert channel == LAB and "restarted while it was checking the images" in said(failed)
    assert f"/cxr train {SOURCE}/" in said(failed) and await second.ops.open() == []


# --- start ----------------------------------------------------------------------------------
async def test_start_shows_the_cost_then_runs_and_serves_the_version(built, rekognition):
    later = {"created": completed("v1")["CreationTimestamp"] + timedelta(days=3)}
    versions = (completed("v1"), completed("v2", **later))
    expect_versions(rekognition, *versions)
    proposal = await built.lifecycle.propose_start(ADMIN, None, 1, 3)
    assert isinstance(proposal, StartProposal) and proposal.version_name == "v2"  # the newest
    assert "$4.00–$12.00/hour (about $96.00–$288.00/day)" in said(proposal)
    assert "1–3 inference units (auto-scaling)" in said(proposal)

    expect_versions(rekognition, *versions)
    rekognition.stubber.add_response(
        "start_project_version",
        {"Status": "STARTING"},
        {"ProjectVersionArn": arn("v2"), "MinInferenceUnits": 1, "MaxInferenceUnits": 3},
    )
    requested = await built.lifecycle.confirm_start(ADMIN, LAB, arn("v2"), 1, 3)
    assert isinstance(requested, StartRequested)

    expect_versions(rekognition, completed("v1"), version("v2", "STARTING"))
    again = await built.lifecycle.confirm_start("U0OTHER01", LAB, arn("v2"), 1, 3)
    assert isinstance(again, Busy) and "v2 is already starting (asked by U0ADMIN01" in said(again)
    v2 = ModelVersion(arn("v2"), "v2", "STOPPED")  # the schedule's start meets the same claim
    held = await built.lifecycle.request_start(v2, "schedule", LAB, 1, "schedule")
    assert isinstance(held, Busy) and held.kind == START  # a fact: Slack words it
    notice = ScheduleNotice(version_name="v2", refused=held)
    assert said(notice).endswith("window failed: v2 is already starting.")

    expect_versions(rekognition, completed("v1"), version("v2", "STARTING"))
    await poll(built)
    assert not built.outbox.posts
    expect_versions(
        rekognition,
        completed("v1"),
        version("v2", "RUNNING", MinInferenceUnits=1, MaxInferenceUnits=3),
    )
    await poll(built)
    [(channel, running)] = built.outbox.of(ModelRunning)
    assert channel == LAB
    assert said(running).startswith(
        "v2 is running with 1–3 inference units (auto-scaling) (started by U0ADMIN01, took 1 min)"
    )
    assert built.router.primary.version_arn == arn("v2")  # the bot now serves it
    run = await built.runs.current(arn("v2"))
    assert run is not None and run.source == "bot" and run.units == 1
    assert [a.result for a in await built.audit.recent(2)] == ["ok: RUNNING", "requested (1–3 IU)"]
    rekognition.stubber.assert_no_pending_responses()


async def test_a_failed_start_is_posted_with_rekognitions_message(built, rekognition):
    expect_versions(rekognition, completed("v1"))
    rekognition.stubber.add_response("start_project_version", {"Status": "STARTING"})
    await built.lifecycle.confirm_start(ADMIN, LAB, arn("v1"), 2, None)
    expect_versions(
        rekognition, version("v1", "FAILED", message="Insufficient capacity in us-east-1.")
    )
    await poll(built)
    [(channel, failed)] = built.outbox.of(ModelStartFailed)
    assert channel == LAB
    assert said(failed) == (
        "v1 failed to start (asked by U0ADMIN01): Insufficient capacity in us-east-1."
    )
    assert await built.runs.current(arn("v1")) is None and await built.ops.open() == []


async def test_start_refuses_what_would_be_a_mistake(built, rekognition):
    assert "more than the 5 inference units" in said(
        await built.lifecycle.propose_start(ADMIN, "v1", 2, 9)
    )
    expect_versions(rekognition, version("v1", "RUNNING", MinInferenceUnits=1))
    running = await built.lifecycle.propose_start(ADMIN, "v1", None, None)
    assert running.tone == "busy" and "v1 is already running" in said(running)
    expect_versions(rekognition, version("v1", "TRAINING_FAILED", message="Bad data"))
    assert "failed to train" in said(await built.lifecycle.propose_start(ADMIN, "v1", 1, None))
    expect_versions(rekognition, completed("v1"))
    unknown = await built.lifecycle.propose_start(ADMIN, "v7", 1, None)
    assert "There's no version `v7`" in said(unknown) and "Versions: v1" in said(unknown)
    rekognition.stubber.assert_no_pending_responses()


async def test_a_start_already_under_way_elsewhere_is_followed(built, rekognition):
    expect_versions(rekognition, version("v1", "STARTING"))
    reply = await built.lifecycle.confirm_start(ADMIN, LAB, arn("v1"), 1, None)
    assert reply.tone == "busy" and "I'll post in this channel when it's running" in said(reply)
    expect_versions(rekognition, version("v1", "RUNNING", MinInferenceUnits=1))
    await poll(built)
    assert [c for c, _ in built.outbox.of(ModelRunning)] == [LAB]


# --- stop -----------------------------------------------------------------------------------
async def test_stop_reports_how_long_it_ran_and_what_it_cost(tmp_path, rekognition, s3):
    b = build(tmp_path / "cxr.db", rekognition, s3, serving_arn=arn("v1"))
    await b.runs.open_run(arn("v1"), b.clock.now(), 2, "bot")
    await b.clock.advance(2 * 3600)
    expect_versions(rekognition, version("v1", "RUNNING", MinInferenceUnits=2))
    rekognition.stubber.add_response(
        "stop_project_version", {"Status": "STOPPING"}, {"ProjectVersionArn": arn("v1")}
    )
    requested = await b.lifecycle.stop(ADMIN, LAB)  # the only running version
    assert isinstance(requested, StopRequested)
    assert "running for 2 h 00 min, about $16.00 so far" in said(requested)

    expect_versions(rekognition, version("v1", "STOPPING"))
    again = await b.lifecycle.stop("U0OTHER01", LAB, "v1")
    assert isinstance(again, Busy) and "v1 is stopping (asked by U0ADMIN01" in said(again)

    expect_versions(rekognition, version("v1", "STOPPING"))
    await poll(b)
    expect_versions(rekognition, version("v1", "STOPPED"))
    await poll(b)
    [(channel, stopped)] = b.outbox.of(ModelStopped)
    assert channel == LAB
    assert said(stopped) == (
        "v1 has stopped (asked by U0ADMIN01). It ran for 2 h 01 min, an estimated $16.13."
    )
    assert await b.runs.current(arn("v1")) is None
    assert b.router._primary_skipped()  # the local model answers meanwhile
    rekognition.stubber.assert_no_pending_responses()
    await b.lifecycle.close()


async def test_stop_of_a_stopped_model_calls_nothing(built, rekognition):
    expect_versions(rekognition, version("v1", "STOPPED"))
    reply = await built.lifecycle.stop(ADMIN, LAB, "v1")
    assert said(reply) == "v1 isn't running (it is STOPPED), so there's nothing to stop."
    expect_versions(rekognition, version("v1", "STOPPED"), completed("v2"))
    nothing = await built.lifecycle.stop(ADMIN, LAB)
    assert "No model version is running" in said(nothing)
    rekognition.stubber.assert_no_pending_responses()
    assert await built.ops.open() == []


async def test_stop_with_two_running_asks_which(built, rekognition):
    expect_versions(rekognition, version("v1", "RUNNING"), version("v2", "RUNNING"))
    reply = await built.lifecycle.stop(ADMIN, LAB)
    assert "Several versions are running" in said(reply) and "/cxr stop" in said(reply)


async def test_outcome_goes_to_the_ops_channel_when_the_channel_refuses(built, rekognition):
    expect_versions(rekognition, completed("v1"))
    rekognition.stubber.add_response("start_project_version", {"Status": "STARTING"})
    await built.lifecycle.confirm_start(ADMIN, LAB, arn("v1"), 1, None)
    built.outbox.refuse.add(LAB)
    expect_versions(rekognition, version("v1", "RUNNING", MinInferenceUnits=1))
    await poll(built)
    assert [c for c, _ in built.outbox.of(ModelRunning)] == ["C0OPS0001"]


async def test_a_start_in_flight_is_followed_after_a_restart(tmp_path, rekognition, s3):
    first = build(tmp_path / "cxr.db", rekognition, s3, serving_arn=arn("v1"))
    expect_versions(rekognition, completed("v1"))
    rekognition.stubber.add_response("start_project_version", {"Status": "STARTING"})
    await first.lifecycle.confirm_start(ADMIN, LAB, arn("v1"), 1, None)
    await first.lifecycle.close()
    first.db.close()

    second = build(tmp_path / "cxr.db", rekognition, s3, serving_arn=arn("v1"))
    assert [op.kind for op in await second.ops.open()] == [START]
    expect_versions(rekognition, version("v1", "RUNNING", MinInferenceUnits=1))
    await second.lifecycle.resume()  # polls at once, then as usual
    await second.lifecycle.settle()
    assert [c for c, _ in second.outbox.of(ModelRunning)] == [LAB]
    await second.lifecycle.close()


# --- status ---------------------------------------------------------------------------------
async def test_status_lists_versions_metrics_runs_costs_and_recent_actions(
    tmp_path, rekognition, s3
):
    b = build(tmp_path / "cxr.db", rekognition, s3, serving_arn=arn("v1"))
    await b.runs.open_run(arn("v1"), b.clock.now(), 1, "bot")
    await b.audit.record(b.clock.now(), ADMIN, "start", "v1", "ok: RUNNING")
    await b.clock.advance(90 * 60)
    put_summary(s3, "v2")
    expect_versions(
        rekognition,
        version("v1", "RUNNING", MinInferenceUnits=1, MaxInferenceUnits=2),
        completed("v2", created=completed("v1")["CreationTimestamp"] + timedelta(days=1)),
        version("v3", "TRAINING_FAILED", message="Not enough images."),
    )
    report = await b.lifecycle.status()
    assert isinstance(report, StatusReport)
    rows = {row.name: row for row in report.rows}
    assert rows["v1"].serving and rows["v1"].cost_so_far == pytest.approx(6.0)
    assert [m.label for m in rows["v2"].labels] == ["Normal", "Pneumonia"]
    text = render(report).text
    assert "Serving: Rekognition cxr v1" in text
    assert (
        "v1: RUNNING, serving, created 2026-01-01, 1–2 inference units (auto-scaling), "
        "running 1 h 30 min, about $6.00 so far"
    ) in text
    assert (
        "v2: TRAINING_COMPLETED, F1 0.912, Normal: precision 87.5%, recall 90.0%; "
        "Pneumonia: precision 95.0%, recall 91.0%, created 2026-01-02"
    ) in text
    assert "v3: TRAINING_FAILED, created 2026-01-01, Not enough images." in text
    assert "2026-01-05 09:00 <@U0ADMIN01> start v1: ok: RUNNING" in text
    blocks = str(render(report).blocks)
    assert ":arrow_forward: *v1: RUNNING, serving" in blocks and "Recent actions" in blocks
    rekognition.stubber.assert_no_pending_responses()


async def test_local_model_only_status_shows_its_card(tmp_path, rekognition):
    card = {
        "name": "cxr-cnn",
        "version": "v1",
        "created": "2026-01-02",
        "metrics": {"validation": {"n": 800, "accuracy": 0.95, "sensitivity": 0.96, "auc": 0.99}},
        "data": {"counts": {"Normal": 1349, "Pneumonia": 3883}},
        "limitations": ["Pediatric films from one hospital."],
    }
    b = build(tmp_path / "cxr.db", rekognition, project=False, card=card)
    report = await b.lifecycle.status()
    text = render(report).text
    assert "Serving: local cxr-cnn v1" in text
    assert "Local model cxr-cnn v1, created 2026-01-02" in text
    assert "Validation: accuracy 95.0%, sensitivity 96.0%, auc 99.0% (n = 800)" in text
    assert "need CXR_PROJECT_ARN" in text
    for action in ("start", "stop", "train"):
        assert "this bot runs only its local model" in said(b.lifecycle.rekognition_only(action))
    assert "this bot runs only" in said(await b.lifecycle.stop(ADMIN, LAB))
    no_card = build(tmp_path / "other.db", rekognition, project=False, card=None)
    assert "no model card found" in render(await no_card.lifecycle.status()).text
