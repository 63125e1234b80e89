"""The CloudWatch usage adapter (moto) and the cost guard's Slack renderers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from bot.adapters.cloudwatch_usage import CloudWatchUsage
from bot.core.fleet import notices as cn
from bot.slack.blocks import render

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
DIMENSIONS = [{"Name": "ProjectName", "Value": "cxr"}, {"Name": "VersionName", "Value": "v1"}]


@pytest.fixture
def cloudwatch():
    with mock_aws():
        yield boto3.client("cloudwatch", region_name="us-east-1")


def put(cloudwatch, name: str, at: datetime, value: float, dimensions=DIMENSIONS) -> None:
    cloudwatch.put_metric_data(
        Namespace="AWS/Rekognition",
        MetricData=[
            {"MetricName": name, "Dimensions": dimensions, "Timestamp": at, "Value": value}
        ],
    )


async def test_requests_and_units_for_one_version(cloudwatch):
    for minute in range(0, 60):
        put(cloudwatch, "InServiceInferenceUnits", T0 + timedelta(minutes=minute), 2)
    put(cloudwatch, "SuccessfulRequestCount", T0 + timedelta(minutes=7, seconds=40), 3)
    put(cloudwatch, "SuccessfulRequestCount", T0 + timedelta(minutes=41, seconds=5), 2)
    put(cloudwatch, "SuccessfulRequestCount", T0 + timedelta(minutes=50), 0)  # no traffic
    other = [DIMENSIONS[0], {"Name": "VersionName", "Value": "v2"}]
    put(cloudwatch, "SuccessfulRequestCount", T0 + timedelta(minutes=55), 9, other)

    usage = await CloudWatchUsage(cloudwatch).usage(
        "cxr", "v1", T0 - timedelta(hours=1, seconds=17), T0 + timedelta(minutes=59, seconds=3)
    )
    assert usage.ok and usage.requests == 5
    assert usage.last_request == T0 + timedelta(minutes=42)  # the end of its one-minute period
    assert usage.units == 2.0
    assert usage.running_since == T0


async def test_a_gap_in_units_means_the_model_was_stopped_in_between(cloudwatch):
    for minute in list(range(0, 30)) + list(range(45, 60)):
        put(cloudwatch, "InServiceInferenceUnits", T0 + timedelta(minutes=minute), 1)
    usage = await CloudWatchUsage(cloudwatch).usage("cxr", "v1", T0, T0 + timedelta(minutes=60))
    assert usage.running_since == T0 + timedelta(minutes=45)
    assert usage.last_request is None and usage.requests == 0


async def test_missing_metrics_are_no_news(cloudwatch):
    usage = await CloudWatchUsage(cloudwatch).usage("cxr", "v1", T0, T0 + timedelta(hours=1))
    assert usage.ok
    assert (usage.last_request, usage.requests, usage.units, usage.running_since) == (
        None,
        0,
        None,
        None,
    )


async def test_units_that_stopped_long_ago_are_not_a_running_model(cloudwatch):
    for minute in range(0, 10):
        put(cloudwatch, "InServiceInferenceUnits", T0 + timedelta(minutes=minute), 1)
    usage = await CloudWatchUsage(cloudwatch).usage("cxr", "v1", T0, T0 + timedelta(hours=2))
    assert usage.running_since is None


async def test_errors_are_tolerated_and_reported_as_unknown():
    client = boto3.client(
        "cloudwatch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    with Stubber(client) as stubber:
        stubber.add_client_error("get_metric_data", "AccessDenied", "not allowed", 403)
        usage = await CloudWatchUsage(client).usage("cxr", "v1", T0, T0 + timedelta(hours=1))
        stubber.assert_no_pending_responses()
    assert not usage.ok and usage.requests is None
    # the alert says what the bot can't see, in the words any AWS credentials refusal gets
    sight = cn.Sight(auto_stop="sole-client", cloudwatch_failure=usage.failure)
    alert = cn.IdleAlert(version_name="v1", hourly=4.0, sight=sight)
    assert "AWS refused the bot's credentials (AccessDenied: not allowed)" in render(alert).text


async def test_pages_are_followed():
    client = boto3.client(
        "cloudwatch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    page = {
        "Id": "requests",
        "Timestamps": [T0 + timedelta(minutes=3)],
        "Values": [1.0],
        "StatusCode": "PartialData",
    }
    with Stubber(client) as stubber:
        stubber.add_response("get_metric_data", {"MetricDataResults": [page], "NextToken": "more"})
        stubber.add_response(
            "get_metric_data",
            {"MetricDataResults": [{**page, "Timestamps": [T0 + timedelta(minutes=9)]}]},
        )
        usage = await CloudWatchUsage(client).usage("cxr", "v1", T0, T0 + timedelta(hours=1))
        stubber.assert_no_pending_responses()
    assert usage.requests == 2 and usage.last_request == T0 + timedelta(minutes=10)


# --- renderers -------------------------------------------------------------------------------
def test_the_idle_alert_carries_its_buttons_and_the_facts():
    alert = cn.IdleAlert(
        episode_id=42,
        version_name="cxr.v1",
        units=2,
        hourly=8.0,
        idle_since=T0,
        idle_seconds=45 * 60,
        idle_cost=6.0,
        auto_stop_at=T0 + timedelta(hours=1),
    )
    rendered = render(alert)
    shown = [b.get("text") or b["elements"][0] for b in rendered.blocks if b["type"] != "actions"]
    sentences = [t["text"].removeprefix(":hourglass_flowing_sand: ") for t in shown]
    assert len(sentences) > 2 and all(t in rendered.text for t in sentences)  # one wording
    assert "2 inference units at $8.00/h" in rendered.text and "Auto-stop at 10:00 UTC" in (
        rendered.text
    )
    [actions] = [b for b in rendered.blocks if b["type"] == "actions"]
    assert [(e["action_id"], e["value"]) for e in actions["elements"]] == [
        ("cost_guard:stop", "42"),
        ("cost_guard:keep_1h", "42"),
        ("cost_guard:keep_4h", "42"),
    ]
    assert actions["elements"][0]["style"] == "danger" and "confirm" in actions["elements"][0]


def test_a_closed_alert_has_no_buttons():
    alert = cn.IdleAlert(
        episode_id=1,
        version_name="cxr.v1",
        state=cn.STOPPED,
        actor="U0ADMIN01",
        acted_at=T0,
        idle_seconds=3600,
    )
    rendered = render(alert)
    assert not [b for b in rendered.blocks if b["type"] == "actions"]
    assert "stopped by <@U0ADMIN01> at 09:00 UTC after 1 h 00 min idle" in rendered.text


def test_the_spend_summary_stays_within_slacks_block_limit():
    rows = [cn.SpendRow(f"cxr.v{i}", 3600 * 2, 1, 8.0, requests=None, images=i) for i in range(40)]
    summary = cn.SpendSummary(day=T0.date(), rows=rows, running_now=["cxr.v1"])
    rendered = render(summary)
    assert len(rendered.blocks) <= 50
    assert rendered.text.startswith("Rekognition spend for Mon 5 Jan 2026 (UTC): $320.00.")
    assert "requests unknown" in rendered.text and "no images classified by the bot" in (
        rendered.text
    )
    assert "$8.00 per classified image" in rendered.text  # cxr.v1: one image
