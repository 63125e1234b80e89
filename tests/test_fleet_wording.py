"""Fleet notices are facts in the core and words in `bot.slack.fleet`: every kind has its own
wording, renders Block Kit the SDK accepts, and its fallback text says what its blocks say."""

from __future__ import annotations

import inspect

import pytest

from bot.core.fleet import notices
from bot.core.ports import Notice
from bot.slack.blocks import render
from bot.slack.fleet import mrkdwn, said, words

KINDS = [
    kind
    for kind in vars(notices).values()
    if inspect.isclass(kind)
    and issubclass(kind, Notice)
    and kind.__module__ == notices.__name__
    and not kind.__subclasses__()  # the facts a family shares are not a message of their own
]


def test_every_kind_is_found():
    names = {kind.__name__ for kind in KINDS}
    assert {"Busy", "StartProposal", "TrainingFailed", "IdleAlert", "SpendSummary"} <= names
    assert "UnitsNotice" not in names and "VersionNotice" not in names


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
def test_the_core_carries_facts_and_slack_words_them(kind):
    assert not hasattr(kind, "describe")
    notice = kind(version_name="v<1>") if "version_name" in vars(kind()) else kind()
    assert notice.text == ""  # nothing worded in the core
    assert words.dispatch(kind) is not words.dispatch(object)
    rendered = render(notice)  # the SDK's models validate the blocks here
    assert rendered.blocks and rendered.text
    for paragraph in mrkdwn(notice):  # one wording: each block's words are in the fallback
        assert paragraph in rendered.text
    if "version_name" in vars(notice):
        assert "v&lt;1&gt;" in rendered.text and "v<1>" in said(notice)


def test_ids_are_mentions_in_slack_and_ids_in_plain_text():
    busy = notices.Busy(version_name="v1", kind="stop", by="U0ADMIN01", channel="C0LAB0001")
    assert "asked by <@U0ADMIN01>" in render(busy).text and "in <#C0LAB0001>" in render(busy).text
    assert "asked by U0ADMIN01" in said(busy) and "in C0LAB0001" in said(busy)
    assert "asked by you" in said(notices.Busy(version_name="v1", by="U1", asker="U1"))


def test_a_guard_stop_that_did_not_take_effect_says_why_as_the_command_would():
    failed = notices.ModelStopFailed(version_name="v1", reason="not-stopped", status="RUNNING")
    alert = said(notices.StopFailed(version_name="v1", hourly=4.0, failure=failed))
    assert "I couldn't stop v1 (the stop did not take effect: it is RUNNING)" in alert
    assert said(failed).endswith(": the stop did not take effect: it is RUNNING")
    aws = said(notices.StopFailed(version_name="v1", hourly=4.0, error="ThrottlingException"))
    assert "I couldn't stop v1 (ThrottlingException)" in aws


@pytest.mark.parametrize(
    ("held", "clause"),
    [("start", "v1 is already starting"), ("stop", "v1 is stopping"), ("", "v1 is busy")],
)
def test_the_guard_says_what_holds_the_version_it_could_not_stop_or_start(held, clause):
    error = notices.HELD + held
    assert f"I couldn't stop v1 ({clause})" in said(
        notices.StopFailed(version_name="v1", error=error)
    )
    alert = notices.IdleAlert(version_name="v1", state=notices.STOP_FAILED, detail=error)
    assert f": {clause}" in said(alert)
