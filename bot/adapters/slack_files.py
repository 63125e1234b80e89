"""Downloading Slack-hosted files: with the bot token, streamed, capped, and only from Slack.

The bot token is sent only to Slack's file hosts or the configured API host. Redirects are
followed by hand so the token is never replayed to another host (aiohttp would strip it on a
cross-origin redirect, leaving us with a login page instead of an error).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import urljoin, urlsplit

import aiohttp

from bot.core.clock import Clock, SystemClock
from bot.core.errors import DownloadFailed, FileTooLarge, SlackScopeMissing
from bot.core.ports import ImageRef

log = logging.getLogger(__name__)

SLACK_FILE_HOSTS = ("slack.com", "slack-edge.com", "slack-files.com")
CHUNK = 64 * 1024
MAX_REDIRECTS = 3


def is_trusted_host(url: str, api_url: str) -> bool:
    """Slack's own hosts (any subdomain of slack.com, …) or exactly the configured API origin."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and any(
        host == h or host.endswith("." + h) for h in SLACK_FILE_HOSTS
    ):
        return True
    api = urlsplit(api_url)
    return (parts.scheme, host, parts.port) == (api.scheme, (api.hostname or "").lower(), api.port)


class _Transient(Exception):
    """A failure worth another try: no connection, a 5xx, a 429 (with its Retry-After)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


# Downloads ride out a Slack outage of a few minutes, as replies do (about 3.5 min in all).
DOWNLOAD_RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 30.0, 30.0, 30.0, 60.0)
OUTAGE_REPLY = (
    "I couldn't download the file from Slack: Slack kept failing for several minutes. "
    "Please post it again once Slack is back."
)


class SlackFileFetcher:
    def __init__(
        self,
        token: str,
        api_url: str,
        *,
        timeout_s: float = 30.0,
        clock: Clock | None = None,
        retry_delays: tuple[float, ...] = DOWNLOAD_RETRY_DELAYS,
    ) -> None:
        self._token = token
        self._api_url = api_url
        self._clock = clock or SystemClock()
        self._retry_delays = retry_delays
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=10)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def fetch(self, ref: ImageRef, max_bytes: int) -> bytes:
        """Retries connection errors, 5xx and 429 with backoff (429: after Retry-After) for a
        few minutes, then gives one clear reply."""
        if ref.size and ref.size > max_bytes:
            raise _too_large(ref.size, max_bytes)
        for delay in (*self._retry_delays, None):
            try:
                return await self._fetch_once(ref, max_bytes)
            except _Transient as exc:
                log.warning(
                    "download.retrying" if delay is not None else "download.gave_up",
                    extra={"file_id": ref.file_id, "reason": exc.reason},
                )
                if delay is None:
                    raise DownloadFailed(OUTAGE_REPLY) from None
                await self._clock.sleep(max(delay, exc.retry_after or 0.0))
        raise DownloadFailed(OUTAGE_REPLY)

    async def _fetch_once(self, ref: ImageRef, max_bytes: int) -> bytes:
        url = ref.url
        for _ in range(MAX_REDIRECTS + 1):
            if not url or not is_trusted_host(url, self._api_url):
                log.warning("download.refused_host", extra={"file_id": ref.file_id})
                raise DownloadFailed(
                    "I can only download files hosted by Slack, and this one isn't."
                )
            try:
                async with self._client().get(
                    url,
                    headers={"Authorization": f"Bearer {self._token}"},
                    allow_redirects=False,
                ) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        url = urljoin(url, response.headers.get("Location", ""))
                        continue
                    if response.status == 429 or response.status >= 500:
                        raise _Transient(f"HTTP {response.status}", _retry_after(response.headers))
                    if response.status != 200:
                        log.warning(
                            "download.http_error",
                            extra={"file_id": ref.file_id, "status": response.status},
                        )
                        raise DownloadFailed(
                            f"Slack wouldn't give me the file (HTTP {response.status}). "
                            "Please try posting it again."
                        )
                    content_type = response.headers.get("Content-Type", "").lower()
                    if content_type.startswith("text/html"):
                        raise SlackScopeMissing(
                            "Slack sent me a sign-in page instead of the image: the app is "
                            "probably missing the `files:read` scope. An admin can add it and "
                            "reinstall the app."
                        )
                    declared = response.content_length
                    if declared is not None and declared > max_bytes:
                        raise _too_large(declared, max_bytes)
                    return await _read_capped(response, max_bytes)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise _Transient(type(exc).__name__) from None
        raise DownloadFailed("Slack redirected the download too many times.")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    try:
        return min(float(headers.get("Retry-After", "")), 120.0)
    except ValueError:
        return None


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    buffer = bytearray()
    async for chunk in response.content.iter_chunked(CHUNK):
        buffer += chunk
        if len(buffer) > max_bytes:
            raise _too_large(None, max_bytes)
    return bytes(buffer)


def _too_large(size: int | None, max_bytes: int) -> FileTooLarge:
    limit = f"my {human_size(max_bytes)} limit for X-rays"
    what = (
        f"This file is {human_size(size)}, over {limit}" if size else f"This file is over {limit}"
    )
    return FileTooLarge(f"{what}. Please post a smaller export (PNG or JPEG).")


def human_size(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1024 * 1024):.1f} MB".replace(".0 MB", " MB")
