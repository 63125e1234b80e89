"""The core's `FileDescriber` on `files.info`: details of files an event only named."""

from __future__ import annotations

import logging

from slack_sdk.web.async_client import AsyncWebClient

from bot.core.ports import ImageRef
from bot.slack.client import error_code

log = logging.getLogger(__name__)


class SlackFileDescriber:
    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def describe(self, ref: ImageRef) -> ImageRef | None:
        """The file's details, or None when Slack can't say (any failure, whatever its body)."""
        try:
            response = await self.client.files_info(file=ref.file_id)
            file = response.get("file")
        except Exception as exc:
            log.warning(
                "files_info.failed", extra={"file_id": ref.file_id, "error": error_code(exc)}
            )
            return None
        if not isinstance(file, dict):
            return None
        return ImageRef(
            file_id=ref.file_id,
            name=str(file.get("name") or file.get("title") or ref.name),
            mimetype=str(file.get("mimetype") or ""),
            size=file_size(file.get("size")),
            url=str(file.get("url_private_download") or file.get("url_private") or ""),
            external=is_external(file),
        )


def file_size(value: object) -> int:
    try:
        return max(0, int(value or 0))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


def is_external(file: dict) -> bool:
    """Stored outside Slack: a linked Drive/Dropbox file or a remote file (files.remote.add)."""
    return bool(file.get("is_external")) or file.get("mode") == "external"
