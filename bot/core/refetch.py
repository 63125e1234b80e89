"""Fetching again a file the database knows only by its ID.

The database keeps no file names or URLs (a name can carry a patient's, and a Slack URL ends
with it), so whatever fetches a stored file again (export, promote) asks the chat for its URL
first, as a resumed upload does.
"""

from __future__ import annotations

from bot.core.ports import FileDescriber, FileFetcher, ImageRef


class RefetchingFetcher:
    """A `FileFetcher` that looks a URL-less file up with the describer before fetching it."""

    def __init__(self, fetcher: FileFetcher, describer: FileDescriber | None) -> None:
        self.fetcher = fetcher
        self.describer = describer

    async def fetch(self, ref: ImageRef, max_bytes: int) -> bytes:
        if not ref.url and self.describer is not None:
            ref = await self.describer.describe(ref) or ref
        return await self.fetcher.fetch(ref, max_bytes)
