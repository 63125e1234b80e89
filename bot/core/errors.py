"""Errors a user can act on. Each carries a short, kind reply; details go to the logs only.
`AwsFailure`: a failed AWS call as facts, which the chat words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


class UserFacingError(Exception):
    """Base class: `reply` is what the user reads in Slack, `code` is for logs and metrics."""

    code = "error"

    def __init__(self, reply: str, *, detail: str = "") -> None:
        super().__init__(detail or reply)
        self.reply = reply
        self.detail = detail


class UnsupportedFile(UserFacingError):
    code = "unsupported_type"


class FileTooLarge(UserFacingError):
    code = "too_large"


class CorruptImage(UserFacingError):
    code = "corrupt_image"


class ImageOutOfLimits(UserFacingError):
    """Too small, too extreme an aspect ratio, or too many pixels to decode safely."""

    code = "image_out_of_limits"


class PatientDataRefused(UserFacingError):
    """The file carries patient identifiers and the bot is set to refuse such files."""

    code = "patient_data"


class NotAChestXray(UserFacingError):
    code = "not_a_chest_xray"


class DownloadFailed(UserFacingError):
    code = "download_failed"


class SlackScopeMissing(DownloadFailed):
    code = "files_read_scope_missing"


class ModelNotRunning(UserFacingError):
    code = "model_not_running"


class ClassifierUnavailable(UserFacingError):
    """Credentials missing or denied, throttled past our retries, or a service error."""

    code = "classifier_unavailable"


class Undeliverable(Exception):
    """The chat refuses a message for good (channel archived, bot removed): retrying is futile."""


AwsFailureKind = Literal["credentials", "no-credentials", "unreachable", "said", "other"]
REFUSED_CREDENTIALS = (  # AWS error codes: the credentials were refused (or are stale)
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
)
NO_CREDENTIALS = ("NoCredentialsError", "PartialCredentialsError")
# botocore's bases for a connection that failed or timed out (endpoint, TLS, proxy, read)
UNREACHABLE = ("ConnectionError", "HTTPClientError")


@dataclass(frozen=True)
class AwsFailure:
    """An AWS call that failed, as facts the chat words (`bot.slack.fleet.aws_words`): what
    kind of failure, AWS's error code (else the exception's name) and its message. "said": a
    `UserFacingError`, whose `message` is its reply already."""

    kind: AwsFailureKind = "other"
    code: str = ""
    message: str = ""

    @classmethod
    def of(cls, exc: BaseException) -> AwsFailure:
        """Read botocore's exceptions by duck typing (`response["Error"]`, the class name):
        the core doesn't import botocore."""
        if isinstance(exc, UserFacingError):
            return cls("said", exc.code, exc.reply)
        response = getattr(exc, "response", {}) or {}
        details = response.get("Error", {}) if isinstance(response, dict) else {}
        code, name = details.get("Code", ""), type(exc).__name__
        if code in REFUSED_CREDENTIALS:
            return cls("credentials", code, details.get("Message", ""))
        if name in NO_CREDENTIALS:
            return cls("no-credentials", name)
        if any(_botocore(base) and base.__name__ in UNREACHABLE for base in type(exc).__mro__):
            return cls("unreachable", name)
        if code:
            return cls("other", code, details.get("Message", ""))
        return cls("other", name, str(exc))


def _botocore(kind: type) -> bool:
    return kind.__module__.startswith("botocore.")
