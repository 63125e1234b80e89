"""AWS failures in words an admin can act on (botocore errors read by duck typing)."""

from __future__ import annotations


def aws_error(exc: BaseException) -> str:
    """ "AccessDenied: …" from a botocore ClientError; the exception's name otherwise."""
    response = getattr(exc, "response", None) or {}
    error = response.get("Error") or {}
    code, message = error.get("Code"), error.get("Message")
    if code and message:
        return f"{code}: {message}"
    return code or message or type(exc).__name__
