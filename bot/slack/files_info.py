"""The core's `FileDescriber` on `files.info`: details of files an event only named."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.ports import ImageRef

log = logging.getLogger(__name__)


class SlackFileDescriber:
    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def describe(self, ref: ImageRef) -> ImageRef | None:
        try:
            response = await self.client.files_info(file=ref.file_id)
        except SlackApiError as exc:
            log.warning("files_info.failed", extra={"error": exc.response.get("error")})
            return None
        file = response.get("file") or {}
        return ImageRef(
            file_id=ref.file_id,
            name=file.get("name") or file.get("title") or ref.name,
            mimetype=file.get("mimetype", ""),
            size=int(file.get("size") or 0),
            url=file.get("url_private_download") or file.get("url_private") or "",
        )
