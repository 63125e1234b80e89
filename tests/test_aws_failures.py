"""An AWS failure is a fact in the core (`AwsFailure`, read from botocore's own exceptions by
duck typing) and words in Slack (`aws_words`, the one wording every reply quoting one uses)."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from bot.core.errors import AwsFailure, ClassifierUnavailable
from bot.core.fleet import notices
from bot.slack.fleet import aws_words, said

ENDPOINT = "https://rekognition.us-east-1.amazonaws.com"
REFUSED = "AWS refused the bot's credentials ({}). Check its IAM policy."
UNREACHABLE = "I couldn't reach AWS just now; please try again in a few minutes."


def client_error(code: str, message: str | None = None) -> ClientError:
    error = {"Code": code} | ({"Message": message} if message is not None else {})
    return ClientError({"Error": error}, "StartProjectVersion")


CASES = [  # the exception, the fact read from it, the words said
    (
        client_error("AccessDeniedException", "User u is not authorized"),
        AwsFailure("credentials", "AccessDeniedException", "User u is not authorized"),
        REFUSED.format("AccessDeniedException: User u is not authorized"),
    ),
    (
        client_error("UnrecognizedClientException", "The security token is invalid"),
        AwsFailure("credentials", "UnrecognizedClientException", "The security token is invalid"),
        REFUSED.format("UnrecognizedClientException: The security token is invalid"),
    ),
    (
        client_error("ThrottlingException", "Rate exceeded"),
        AwsFailure("other", "ThrottlingException", "Rate exceeded"),
        "ThrottlingException: Rate exceeded",
    ),
    (
        client_error("ResourceNotFoundException"),
        AwsFailure("other", "ResourceNotFoundException"),
        "ResourceNotFoundException",
    ),
    (
        NoCredentialsError(),
        AwsFailure("no-credentials", "NoCredentialsError"),
        "The bot has no AWS credentials configured.",
    ),
    (
        PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
        AwsFailure("no-credentials", "PartialCredentialsError"),
        "The bot has no AWS credentials configured.",
    ),
    (
        EndpointConnectionError(endpoint_url=ENDPOINT),
        AwsFailure("unreachable", "EndpointConnectionError"),
        UNREACHABLE,
    ),
    (
        ReadTimeoutError(endpoint_url=ENDPOINT),
        AwsFailure("unreachable", "ReadTimeoutError"),
        UNREACHABLE,
    ),
    (
        ConnectionClosedError(endpoint_url=ENDPOINT),
        AwsFailure("unreachable", "ConnectionClosedError"),
        UNREACHABLE,
    ),
    (
        client_error(
            "ExpiredTokenException", "The security token included in the request is expired"
        ),
        AwsFailure(
            "credentials",
            "ExpiredTokenException",
            "The security token included in the request is expired",
        ),
        REFUSED.format(
            "ExpiredTokenException: The security token included in the request is expired"
        ),
    ),
    (
        ConnectionError("no route to host"),
        AwsFailure("other", "ConnectionError", "no route to host"),
        "ConnectionError: no route to host",
    ),
    (RuntimeError(), AwsFailure("other", "RuntimeError"), "RuntimeError"),
    (  # a user-facing error keeps its reply
        ClassifierUnavailable("Rekognition is busy; try again.", detail="throttled"),
        AwsFailure("said", "classifier_unavailable", "Rekognition is busy; try again."),
        "Rekognition is busy; try again.",
    ),
]


@pytest.mark.parametrize(("exc", "fact", "words"), CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_a_failure_is_read_as_a_fact_and_worded_once(exc, fact, words):
    assert AwsFailure.of(exc) == fact
    assert aws_words(fact) == words


def test_a_client_error_without_a_code_says_what_botocore_said():
    exc = ClientError({"Error": {"Message": "odd"}}, "DescribeProjectVersions")
    assert AwsFailure.of(exc) == AwsFailure("other", "ClientError", str(exc))
    assert aws_words(AwsFailure.of(exc)) == f"ClientError: {exc}"


def test_a_source_without_an_answer_says_so():
    assert aws_words(AwsFailure()) == "no answer"


def test_every_reply_that_quotes_a_failure_words_it_the_same():
    fact = AwsFailure.of(NoCredentialsError())
    words = "The bot has no AWS credentials configured."
    replies = [
        notices.VersionsUnreadable(failure=fact),
        notices.SourceUnreadable(source="s3://b/p", failure=fact),
        notices.RequestFailed(action="stop", version_name="v1", failure=fact),
        notices.TrainingFailed(version_name="v1", reason="datasets", failure=fact),
        notices.StopFailed(version_name="v1", refused=notices.RequestFailed(failure=fact)),
    ]
    for reply in replies:
        assert words in said(reply)
    failed = notices.TrainingFailed(version_name="v1", reason="create-version", failure=fact)
    assert failed.result == "failed: create-version, NoCredentialsError"  # the audit: its code


def test_the_guards_notices_say_why_a_stop_or_start_was_not_asked_for():
    busy = notices.Busy(version_name="v1", kind="start")
    assert "I couldn't stop v1 (v1 is already starting)" in said(
        notices.StopFailed(version_name="v1", refused=busy)
    )
    denied = notices.RequestFailed(failure=AwsFailure.of(client_error("AccessDenied", "no")))
    schedule = said(notices.ScheduleNotice(version_name="v1", refused=denied))
    assert schedule.endswith(f"window failed: {REFUSED.format('AccessDenied: no')}")
    assert not schedule.endswith("..")  # the sentence ends once


@pytest.mark.parametrize(
    "refused",
    [
        notices.Busy(version_name="v1", kind="start"),
        notices.Refused(reason="busy", tone="busy", version_name="v1"),
        notices.RequestFailed(failure=AwsFailure.of(client_error("ThrottlingException", "slow"))),
    ],
)
def test_an_episodes_note_keeps_why_its_stop_was_not_asked_for(refused):
    from bot.core.fleet.guard import _noted, _refusal

    back = _refusal(_noted(refused))
    assert said(notices.StopFailed(version_name="v1", refused=back)) == said(
        notices.StopFailed(version_name="v1", refused=refused)
    )
