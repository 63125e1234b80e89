"""The Slack Web API client, with retries for rate limits, server errors and lost connections,
and one reading of its failures whatever their body (JSON, text from a proxy, nothing)."""

from __future__ import annotations

from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

# Gateway and server errors a proxy in front of Slack (or Slack) answers, often in text/html.
SERVER_ERRORS = frozenset({500, 502, 503, 504})


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind a failed call, whatever kind of response object carries it."""
    response = getattr(exc, "response", None)
    for attribute in ("status_code", "status"):
        status = getattr(response, attribute, None)
        if isinstance(status, int):
            return status
    return None


def error_code(exc: BaseException) -> str:
    """Slack's `error` string for a failed call, or a stand-in naming what went wrong.

    slack_sdk hands back a dict for JSON bodies, a str for text/plain ones, and an aiohttp
    response (not a dict) when the body claims JSON but isn't; none of that may crash us.
    """
    if isinstance(exc, SlackApiError):
        data: Any = getattr(exc.response, "data", None)
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return data["error"]
        status = http_status(exc)
        return f"http_{status}" if status else "unreadable_response"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) or type(exc).__module__.startswith("aiohttp"):
        return "unreachable"
    if isinstance(exc, (AttributeError, TypeError, ValueError)):
        return "unreadable_response"  # slack_sdk choking on a body it did not expect
    return type(exc).__name__


def is_transient(code: str) -> bool:
    """Errors that a later try may not meet again (outages, rate limits, lost connections)."""
    return code in {
        "timeout",
        "unreachable",
        "unreadable_response",
        "ratelimited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
    } or (code.startswith("http_") and code[5:].isdigit() and int(code[5:]) >= 500)


class AsyncServerErrorsRetryHandler(AsyncRetryHandler):
    """Retries 500/502/503/504, JSON or not (slack_sdk's own handler knows 500 and 503 only, and
    none whose body it could not parse)."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is not None:
            return response.status_code in SERVER_ERRORS
        return error is not None and http_status(error) in SERVER_ERRORS


def web_client(token: str, api_url: str) -> AsyncWebClient:
    """An `AsyncWebClient` that sleeps out 429s (Retry-After) instead of dropping a reply.

    chat.postMessage allows about one message a second per channel; a burst of uploads
    gets 429s, and each is retried after Slack's Retry-After, up to eight times.
    """
    return AsyncWebClient(
        token=token,
        base_url=api_url,
        timeout=30,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=3),
            AsyncRateLimitErrorRetryHandler(max_retry_count=8),
            AsyncServerErrorsRetryHandler(max_retry_count=3),
        ],
    )
