"""The Slack Web API client, with retries for rate limits, server errors and lost connections."""

from __future__ import annotations

from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient


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
            AsyncServerErrorRetryHandler(max_retry_count=3),
        ],
    )
