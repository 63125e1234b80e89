"""Fleet notices are facts in the core and words in `bot.slack.fleet`: every kind has its own
wording, renders Block Kit the SDK accepts, and its fallback text says what its blocks say."""

from __future__ import annotations

import inspect
from typing import get_args

import pytest

from bot.core.errors import AwsFailure
from bot.core.fleet import notices
from bot.core.ports import Notice
from bot.core.training_data import Problem as P
from bot.core.training_data import ProblemReason
from bot.slack.blocks import render
from bot.slack.fleet import mrkdwn, problem, said, words

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
    throttled = AwsFailure(code="ThrottlingException")
    refused = notices.RequestFailed(action="stop", version_name="v1", failure=throttled)
    aws = said(notices.StopFailed(version_name="v1", hourly=4.0, refused=refused))
    assert "I couldn't stop v1 (ThrottlingException)" in aws


@pytest.mark.parametrize(
    ("held", "clause"),
    [
        (notices.Busy(version_name="v1", kind="start"), "v1 is already starting"),
        (notices.Busy(version_name="v1", kind="stop"), "v1 is stopping"),
        (notices.Refused(reason="busy", tone="busy", version_name="v1"), "v1 is busy"),
    ],
)
def test_the_guard_says_what_holds_the_version_it_could_not_stop_or_start(held, clause):
    assert f"I couldn't stop v1 ({clause})" in said(
        notices.StopFailed(version_name="v1", refused=held)
    )
    alert = notices.IdleAlert(version_name="v1", state=notices.STOP_FAILED, refused=held)
    assert f": {clause}" in said(alert)


SRC = "s3://cxr-data/xrays/"
PROBLEMS = [  # each reason a training source is refused for, from its facts to its words
    (
        P("region", source="cxr-eu", regions=("eu-west-1", "us-east-1")),
        "Bucket `cxr-eu` is in eu-west-1, but the bot's Rekognition project is in us-east-1: "
        "Rekognition only reads buckets in its own region. Copy the images to a bucket there.",
    ),
    (
        P("empty", source=SRC),
        f"`{SRC}` is empty: I found no files there. Put the images in `Normal/` and "
        "`Pneumonia/` folders under it.",
    ),
    (
        P("unknown-folders", (("Covid", 1), ("Other", 2))),
        "Folders I don't know as labels (the labels are `Normal/` and `Pneumonia/`):"
        "\n• `Covid/ (1 file)`\n• `Other/ (2 files)`",
    ),
    (P("unlabelled", (("readme.md",),)), "Files that aren't in a label folder:\n• `readme.md`"),
    (
        P("non-images", (("Normal/a.txt",),)),
        "Files that aren't images (Rekognition takes JPEG and PNG):\n• `Normal/a.txt`",
    ),
    (
        P("one-label", source=SRC, count=12, labels=("Normal", "Pneumonia")),
        "Only one label has images (Normal: 12); a classifier needs both. Nothing found under "
        f"`{SRC}Pneumonia/`.",
    ),
    (P("no-images", source=SRC), f"No images found under `Normal/` and `Pneumonia/` in `{SRC}`."),
    (
        P("too-few", (("Normal", 3), ("Pneumonia", 4)), limit=10),
        "Too few images to train on (at least 10 per label):\n• `Normal: 3`\n• `Pneumonia: 4`",
    ),
    (
        P("too-many", count=250_001, limit=250_000),
        "250,001 images: a dataset holds at most 250,000.",
    ),
    (P("unreadable", (("Normal/b.jpeg",),)), "Files I couldn't read as images:\n• `Normal/b.jpeg`"),
    (
        P("wrong-format", (("Normal/g.jpeg", "GIF"),)),
        "Images that aren't JPEG or PNG:\n• `Normal/g.jpeg (a GIF file)`",
    ),
    (
        P("too-large", (("Pneumonia/h.jpeg", 16 * 1024 * 1024),)),
        "Images over Rekognition's 15 MB limit:\n• `Pneumonia/h.jpeg (16.0 MB)`",
    ),
    (
        P("outside-limits", (("Normal/t.jpeg", 32, 64, False), ("Normal/s.png", 4000, 150, True))),
        "Images outside Rekognition's limits (64 to 4096 pixels a side, aspect ratio at most "
        "20:1):\n• `Normal/t.jpeg (32×64)`\n• `Normal/s.png (4000×150, aspect over 20:1)`",
    ),
]


def test_every_problem_reason_is_worded():
    assert [p.reason for p, _ in PROBLEMS] == list(get_args(ProblemReason))


@pytest.mark.parametrize(("facts", "text"), PROBLEMS, ids=lambda x: getattr(x, "reason", ""))
def test_a_refused_training_source_says_why_from_the_facts(facts, text):
    assert problem(facts) == text
    refused = notices.TrainingRefused(source=SRC, problems=[facts])
    assert text in said(refused)


def test_a_long_list_shows_its_first_files_and_how_many_more():
    many = P("unlabelled", tuple((f"f{i}.txt",) for i in range(12)))
    lines = problem(many).splitlines()
    assert lines[1:3] == ["• `f0.txt`", "• `f1.txt`"]
    assert len(lines) == 12 and lines[-1] == "• `… and 2 more`"


@pytest.mark.parametrize(
    ("facts", "words"),
    [
        (
            {"phase": "splitting", "imported": [1200, 0]},
            "of the images to the test dataset. 1,200 images imported.",
        ),
        (
            {"phase": "splitting", "imported": [1200, 3]},
            "1,200 images imported (3 with errors, skipped).",
        ),
        (
            {"phase": "training", "imported": [20, 0], "split": [16, 4]},
            "Now: training. 16 training and 4 test images.",
        ),
        ({"phase": "splitting", "detail": "20 images imported."}, "20 images imported."),
    ],
)
def test_a_trainings_progress_words_the_counts_it_stored(facts, words):
    progress = notices.TrainingProgress(version_name="v1", source="s3://b/p", **facts)
    assert words in said(progress)


@pytest.mark.parametrize(
    ("reason", "tone"),
    [("busy", "busy"), ("already-running", "busy"), ("bad-name", "refused"), ("gone", "refused")],
)
def test_a_refusals_tone_follows_from_its_reason(reason, tone):
    assert notices.Refused(reason=reason).tone == tone
