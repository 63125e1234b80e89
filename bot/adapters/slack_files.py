"""Downloading Slack-hosted files: with the bot token, streamed, capped, and only from Slack.

The bot token is sent only to Slack's file-download paths (on the file hosts, or on the
configured API origin for a stand-in Slack), never to a Web API method. Redirects are
followed by hand so the token is never replayed to another host (aiohttp would strip it on a
cross-origin redirect, leaving us with a login page instead of an error).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import urljoin

import aiohttp
from yarl import URL

from bot.core.clock import Clock, SystemClock
from bot.core.errors import DownloadFailed, FileTooLarge, SlackScopeMissing
from bot.core.ports import ImageRef

log = logging.getLogger(__name__)

SLACK_FILE_HOSTS = ("files.slack.com",)
# Where Slack serves a workspace's private files: never a Web API method (/api/…).
FILE_PATH_PREFIXES = ("/files-pri/", "/files-tmb/")
CHUNK = 64 * 1024
MAX_REDIRECTS = 3


def is_file_url(url: str, api_url: str, file_hosts: tuple[str, ...] = SLACK_FILE_HOSTS) -> bool:
    """May the bot token go to `url`? Only a file-download path on one of Slack's file hosts
    (https), or on the configured API origin (a stand-in Slack serves files there too).

    Checked on the URL as aiohttp will send it (dot segments resolved), so neither
    `/files-pri/../api/chat.postMessage` nor an encoded slash reaches a Web API method.
    """
    try:
        target = URL(url)
    except (ValueError, TypeError):
        return False
    raw = target.raw_path.lower()
    if (
        not target.is_absolute()
        or target.user is not None
        or target.password is not None
        or ".." in target.path
        or "%2f" in raw
        or "%5c" in raw
        or "\\" in target.path
        or not target.path.startswith(FILE_PATH_PREFIXES)
    ):
        return False
    host = (target.host or "").lower()
    if target.scheme == "https" and host in {h.lower() for h in file_hosts}:
        return True
    api = URL(api_url)
    return (target.scheme, host, target.port) == (api.scheme, (api.host or "").lower(), api.port)


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
        file_hosts: tuple[str, ...] | list[str] = SLACK_FILE_HOSTS,
    ) -> None:
        self._token = token
        self._api_url = api_url
        self._clock = clock or SystemClock()
        self._retry_delays = retry_delays
        self._file_hosts = tuple(file_hosts)
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
        if ref.external:
            log.info("download.refused_external", extra={"file_id": ref.file_id})
            raise DownloadFailed(
                "This file is stored outside Slack (a linked or remote file), so I can't read "
                "it. Please upload the X-ray itself to Slack as a PNG or JPEG."
            )
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
        if not url:
            log.warning("download.no_url", extra={"file_id": ref.file_id})
            raise DownloadFailed(
                "Slack didn't tell me where to download this file (its details couldn't be "
                "looked up just now). Please try posting it again in a minute."
            )
        for _ in range(MAX_REDIRECTS + 1):
            if not is_file_url(url, self._api_url, self._file_hosts):
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
