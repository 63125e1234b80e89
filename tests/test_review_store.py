"""Reviews, model answers, exports and the served version in SQLite (migration 2 onwards)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

from bot.core.labels import Label
from bot.core.review.figures import Answer, ModelKey
from bot.core.review.records import CaseKey, Review, ReviewLabel
from bot.services import initial_served_version
from bot.settings import Settings
from bot.state.db import Database
from bot.state.migrations import ADOPT_FIRST_SCHEMA
from bot.state.reviews import ReviewStore
from bot.state.serving import ServingStore
from tests.harness import PROJECT_ARN, VERSION_ARN, open_database

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CASE = CaseKey("C1", "1760000001.000002", "F001")
REK = ModelKey("rekognition", "cxr.v2")


def test_every_review_is_kept_and_the_latest_counts(tmp_path):
    store = ReviewStore(Database(tmp_path / "cxr.db"))
    store.record(Review(CASE, "U1", ReviewLabel.NORMAL, T0))
    store.record(Review(CASE, "U2", ReviewLabel.PNEUMONIA, T0 + timedelta(minutes=3)))
    assert [r.label for r in store.history(CASE)] == [ReviewLabel.NORMAL, ReviewLabel.PNEUMONIA]
    assert store.current(CASE).reviewer == "U2"
    assert store.current_all()[CASE].label is ReviewLabel.PNEUMONIA
    assert store.current(CaseKey("C1", "1", "F9")) is None


async def test_answers_by_time_and_exports(tmp_path):
    store = ReviewStore(open_database(tmp_path / "cxr.db"))
    await store.record_answers([Answer(CASE, REK, Label.PNEUMONIA, True)], T0)
    other = CaseKey("C1", "1760000009.000001", "F002")
    await store.record_answers([Answer(other, REK, Label.NORMAL)], T0 + timedelta(days=5))
    assert await store.off_loop(store.answers) == [
        Answer(CASE, REK, Label.PNEUMONIA, True),
        Answer(other, REK, Label.NORMAL, False),
    ]
    later = await store.off_loop(store.answers, T0 + timedelta(days=1))
    assert [a.case for a in later] == [other]
    await store.off_loop(store.mark_exported, [CASE], "s3://b/p", T0)
    await store.off_loop(store.mark_exported, [CASE], "s3://b/p", T0)  # twice: one row
    assert await store.off_loop(store.exported) == frozenset({CASE})


def test_reviewed_images_carry_the_file_reference_but_no_image(tmp_path):
    db = Database(tmp_path / "cxr.db")
    files = [{"file_id": "F001", "name": "a.jpeg", "mimetype": "image/jpeg", "size": 9, "url": "u"}]
    db.execute(
        "INSERT INTO uploads (channel, ts, thread_ts, user, files, received_at)"
        " VALUES (?, ?, ?, 'U1', ?, ?)",
        (CASE.channel, CASE.ts, CASE.ts, json.dumps(files), T0.isoformat()),
    )
    store = ReviewStore(db)
    store.record(Review(CASE, "U1", ReviewLabel.NORMAL, T0))
    [image] = store.reviewed_images()
    assert image.ref.file_id == "F001" and image.ref.url == "u"
    assert image.review.label is ReviewLabel.NORMAL


def test_the_upgrade_keeps_verdicts_as_model_answers(tmp_path):
    path = tmp_path / "cxr.db"
    conn = sqlite3.connect(path)
    conn.executescript(ADOPT_FIRST_SCHEMA)
    rows = [
        ("F1", "Pneumonia", "rekognition", "cxr.v1"),
        ("F2", "Uncertain", "local", "v1"),  # no top label on record: not an answer
        ("F3", "download_failed", None, None),
    ]
    for file_id, outcome, kind, version in rows:
        conn.execute(
            "INSERT INTO classifications VALUES ('C1', '1.0', ?, ?, ?, ?, '2026-01-01T00:00:00')",
            (file_id, outcome, kind, version),
        )
    conn.commit()
    conn.close()
    answers = ReviewStore(Database(path)).answers()
    assert [(a.case.file_id, a.label, a.model.version) for a in answers] == [
        ("F1", Label.PNEUMONIA, "cxr.v1")
    ]


def settings(**kw) -> Settings:
    values = {"aws_region": "us-east-1", "cxr_project_arn": PROJECT_ARN, **kw}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def test_the_stored_version_wins_over_the_setting_and_outlives_a_restart(tmp_path):
    promoted = VERSION_ARN.replace("cxr.2026-01-01", "cxr.2026-02-01")
    path = tmp_path / "cxr.db"
    store = ServingStore(open_database(path))
    configured = settings(cxr_project_version_arn=VERSION_ARN)
    assert await initial_served_version(configured, store) == VERSION_ARN  # the initial value
    await store.serve(promoted, "U0ADMIN", T0)
    assert await initial_served_version(configured, ServingStore(open_database(path))) == promoted
    assert (await ServingStore(open_database(path)).served()).by == "U0ADMIN"
    # a stored version of another project (the setting changed) doesn't count
    elsewhere = settings(
        cxr_project_arn=PROJECT_ARN.replace("project/cxr/", "project/other/"),
    )
    assert await initial_served_version(elsewhere, store) is None


async def test_only_one_promotion_at_a_time(tmp_path):
    store = ServingStore(open_database(tmp_path / "cxr.db"))
    first = await store.open_promotion("arn:new", "arn:old", "C1", "U1", 1, T0)
    assert first is not None and (await store.in_flight()).id == first.id
    assert await store.open_promotion("arn:other", "arn:old", "C1", "U1", 1, T0) is None
    await store.finish(first.id, "serving", T0)
    assert await store.in_flight() is None
