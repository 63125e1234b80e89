"""The fleet's decisions as tables of cases: pure functions, no fakes, no clock, no database."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from bot.core.fleet.arns import (
    RekognitionArn,
    dataset_type,
    is_version_arn,
    project_name,
    same_project,
    version_name,
)
from bot.core.fleet.decisions import (
    AutoStop,
    GuardConfig,
    Idle,
    IdleFacts,
    OperationFacts,
    ScheduledStop,
    Step,
    billed,
    idle_actions,
    next_reminder_gap,
    operation_step,
    schedule_start_due,
    schedule_stop_due,
    summary_day,
)
from bot.core.schedule import Schedule

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # Monday 09:00 UTC


def m(n: float) -> timedelta:
    return timedelta(minutes=n)


CONFIG = GuardConfig(channel="C0OPS", alert_after=m(30))
AUTO_60 = GuardConfig(channel="C0OPS", alert_after=m(30), auto_stop_after=m(60))


@pytest.mark.parametrize(
    ("facts", "config", "now", "expected"),
    [
        # idle below the threshold: nothing
        (IdleFacts(idle_since=T0), CONFIG, T0 + m(29), []),
        # the threshold: a new episode and its alert
        (IdleFacts(idle_since=T0), CONFIG, T0 + m(30), [Idle.OPEN_ALERT]),
        # an open episode, reminder not due yet / due
        (
            IdleFacts(idle_since=T0, episode_idle_since=T0, next_alert_at=T0 + m(60)),
            CONFIG,
            T0 + m(59),
            [],
        ),
        (
            IdleFacts(idle_since=T0, episode_idle_since=T0, next_alert_at=T0 + m(60)),
            CONFIG,
            T0 + m(60),
            [Idle.REMIND],
        ),
        # the alert's first post failed: post it (not a reminder); without a channel, don't
        (
            IdleFacts(idle_since=T0, episode_idle_since=T0, episode_posted=False),
            CONFIG,
            T0 + m(35),
            [Idle.POST_ALERT],
        ),
        (
            IdleFacts(idle_since=T0, episode_idle_since=T0, episode_posted=False),
            GuardConfig(channel=None),
            T0 + m(35),
            [],
        ),
        # a request ended the episode: close it, and the new stretch is below the threshold
        (
            IdleFacts(idle_since=T0 + m(50), episode_idle_since=T0),
            CONFIG,
            T0 + m(55),
            [Idle.RESUMED],
        ),
        # inside a scheduled window: no alert
        (IdleFacts(idle_since=T0, planned=True), CONFIG, T0 + m(90), []),
        # snoozed: nothing; snooze just over: record it and remind in the same thread
        (
            IdleFacts(idle_since=T0, episode_idle_since=T0, snooze_until=T0 + m(90)),
            AUTO_60,
            T0 + m(89),
            [],
        ),
        (
            IdleFacts(
                idle_since=T0,
                episode_idle_since=T0,
                snooze_until=T0 + m(90),
                snooze_expired=False,
                auto_stop_allowed=False,
            ),
            CONFIG,
            T0 + m(90),
            [Idle.EXPIRE_SNOOZE, Idle.REMIND_AFTER_SNOOZE],
        ),
        # auto-stop: only where the bot sees all traffic
        (IdleFacts(idle_since=T0, auto_stop_allowed=True), AUTO_60, T0 + m(60), [Idle.AUTO_STOP]),
        (
            IdleFacts(idle_since=T0, episode_idle_since=T0, next_alert_at=T0 + m(120)),
            AUTO_60,
            T0 + m(60),
            [],
        ),
        # a stop on its way: nothing until it is confirmed (or the grace runs out)
        (
            IdleFacts(idle_since=T0, auto_stop_allowed=True, stop_requested_at=T0 + m(60)),
            AUTO_60,
            T0 + m(65),
            [],
        ),
        (
            IdleFacts(idle_since=T0, auto_stop_allowed=True, stop_requested_at=T0 + m(60)),
            AUTO_60,
            T0 + m(95),
            [Idle.AUTO_STOP],
        ),
    ],
)
def test_idle_actions(facts, config, now, expected):
    assert idle_actions(facts, config, now) == expected


@pytest.mark.parametrize(
    ("gap", "after_snooze", "expected"),
    [(m(30), False, m(60)), (m(60), False, m(120)), (m(180), False, m(240)), (m(240), True, m(30))],
)
def test_reminders_back_off_up_to_the_cap(gap, after_snooze, expected):
    assert (
        next_reminder_gap(gap, after_snooze=after_snooze, alert_after=m(30), max_gap=m(240))
        == expected
    )


@pytest.mark.parametrize(
    ("configured", "sole", "owned", "expected"),
    [
        (False, True, frozenset({"v1"}), AutoStop.OFF),
        (True, True, frozenset(), AutoStop.SOLE_CLIENT),
        (True, False, frozenset({"v1"}), AutoStop.OWNED),
        (True, False, frozenset({"v2"}), AutoStop.NOT_VISIBLE),
    ],
)
def test_auto_stop_case(configured, sole, owned, expected):
    auto = m(60) if configured else None
    config = GuardConfig(None, auto_stop_after=auto, sole_client=sole, owned_versions=owned)
    assert config.auto_stop_case("v1") == expected


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (OperationFacts("start", "STARTING", requested=False), Step.WAIT),
        (OperationFacts("start", "RUNNING", requested=False), Step.RUNNING),
        (OperationFacts("start", "FAILED", requested=False), Step.FAILED),
        (OperationFacts("start", None, requested=False), Step.GONE),
        # DescribeProjectVersions can lag: an unexpected status is tolerated twice
        (OperationFacts("start", "STOPPED", requested=False, unexpected_seen=1), Step.TOLERATE),
        (OperationFacts("start", "STOPPED", requested=False, unexpected_seen=2), Step.FAILED),
        (OperationFacts("start", "STOPPED", requested=True, unexpected_seen=2), Step.NEVER_SENT),
        (OperationFacts("stop", "STOPPING", requested=False, age=m(29)), Step.WAIT),
        # a stop is confirmed at STOPPED, not at STOPPING; a slow one is reported once
        (OperationFacts("stop", "STOPPED", requested=False), Step.STOPPED),
        (OperationFacts("stop", "TRAINING_COMPLETED", requested=False), Step.STOPPED),
        (OperationFacts("stop", "STOPPING", requested=False, age=m(30)), Step.SLOW),
        (
            OperationFacts("stop", "STOPPING", requested=False, age=m(45), slow_reported=True),
            Step.WAIT,
        ),
        # a stop that doesn't take effect
        (OperationFacts("stop", "RUNNING", requested=False, unexpected_seen=2), Step.FAILED),
        (OperationFacts("stop", "DEPRECATED", requested=False, unexpected_seen=0), Step.TOLERATE),
    ],
)
def test_operation_step(facts, expected):
    assert operation_step(facts) == expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [("RUNNING", True), ("STOPPING", True), ("STARTING", False), ("STOPPED", False)],
)
def test_billing_runs_until_stopped(status, expected):
    assert billed(status) is expected


@pytest.mark.parametrize(
    ("now", "first_started", "sent", "expected"),
    [
        (T0 - m(1), None, frozenset(), None),  # before 09:00
        (T0, None, frozenset(), date(2026, 1, 4)),  # Sunday's
        (T0, None, frozenset({date(2026, 1, 4)}), None),  # sent already
        # the bot first ran on Monday: it knows nothing of Sunday
        (T0, T0 - m(60), frozenset(), None),
        (T0 + timedelta(days=1), T0 - m(60), frozenset(), date(2026, 1, 5)),
    ],
)
def test_summary_day(now, first_started, sent, expected):
    assert (
        summary_day(now, at=time(9, 0), zone="UTC", first_started=first_started, sent=sent)
        == expected
    )


def test_summary_off():
    assert summary_day(T0, at=None, zone="UTC", first_started=None) is None


SCHEDULE = Schedule.parse("Mon-Fri 08:00-09:00", "UTC")
MON = datetime(2026, 1, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "expected_key"),
    [
        (MON + timedelta(hours=7, minutes=44), None),
        (MON + timedelta(hours=7, minutes=45), "start@2026-01-05T08:00:00+00:00"),
        (MON + timedelta(hours=8, minutes=30), "start@2026-01-05T08:00:00+00:00"),
        (MON + timedelta(hours=9), None),
    ],
)
def test_schedule_start_due(now, expected_key):
    due = schedule_start_due(SCHEDULE, now, m(15))
    assert (due[0] if due else None) == expected_key


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (MON + timedelta(hours=8, minutes=30), ScheduledStop.MISSED),  # Friday's, long ago
        (MON + timedelta(hours=9), ScheduledStop.DUE),
        (MON + timedelta(hours=9, minutes=59), ScheduledStop.DUE),  # within the grace
        (MON + timedelta(hours=11), ScheduledStop.MISSED),  # more than the grace late
    ],
)
def test_schedule_stop_due(now, expected):
    what, _, _ = schedule_stop_due(SCHEDULE, now, lead=m(15), grace=timedelta(hours=1))
    assert what == expected


# --- the one ARN helper ----------------------------------------------------------------------
P = "arn:aws:rekognition:us-east-1:123456789012:project/cxr/1700000000000"
V = "arn:aws:rekognition:us-east-1:123456789012:project/cxr/version/cxr.v1/1700000000001"
D = "arn:aws:rekognition:us-east-1:123456789012:project/cxr/dataset/train/1700000000002"


@pytest.mark.parametrize(
    ("arn", "kind", "project", "name"),
    [
        (P, "project", "cxr", "cxr"),
        (V, "version", "cxr", "cxr.v1"),
        (D, "dataset", "cxr", "TRAIN"),
        ("cxr.v1", "", "", "cxr.v1"),  # not an ARN: a name
    ],
)
def test_rekognition_arns(arn, kind, project, name):
    parsed = RekognitionArn.parse(arn)
    assert (parsed.kind, parsed.project, parsed.name) == (kind, project, name)


def test_arn_helpers():
    assert project_name(V) == "cxr" and version_name(V) == "cxr.v1"
    assert project_name("nonsense") == "custom-labels"
    assert dataset_type(D) == "TRAIN" and dataset_type(V) == ""
    assert is_version_arn(V) and not is_version_arn(P) and not is_version_arn("cxr.v1")
    assert same_project(V, P)
    assert not same_project(V.replace("project/cxr/", "project/other/"), P)
    assert not same_project(V.replace("123456789012", "999999999999"), P)
