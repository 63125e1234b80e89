"""The interfaces the domain depends on. Adapters implement them; the core knows nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from bot.core.labels import ModelInfo, Prediction


@dataclass(frozen=True)
class ImageRef:
    """One file attached to a chat message, as much as the core needs to fetch and name it."""

    file_id: str
    name: str
    mimetype: str = ""
    size: int = 0
    url: str = ""  # where to download it (Slack: url_private_download)
    external: bool = False  # stored outside the chat (a linked Drive file, a remote file)


@dataclass(frozen=True)
class Upload:
    """A chat message carrying one or more files: the unit that gets one reply."""

    channel: str
    ts: str  # the message's own timestamp (its id in the channel)
    thread_ts: str  # where replies go: the message's thread, or the message itself
    user: str
    files: tuple[ImageRef, ...]
    direct: bool = False  # posted to the bot in a DM: every file gets an answer, not just images

    @property
    def key(self) -> str:
        """The upload's name in leases and reply metadata: no patient data, just Slack IDs."""
        return f"{self.channel}:{self.ts}"


class FileFetcher(Protocol):
    async def fetch(self, ref: ImageRef, max_bytes: int) -> bytes:
        """The file's bytes, or a `UserFacingError` (too large, scope missing, download failed)."""
        ...


class FileDescriber(Protocol):
    async def describe(self, ref: ImageRef) -> ImageRef | None:
        """Name, type, size and URL of a file the event only named (Slack Connect), or None."""
        ...


class Classifier(Protocol):
    """Anything that scores a chest X-ray as Normal or Pneumonia."""

    @property
    def model(self) -> ModelInfo: ...

    @property
    def max_side(self) -> int:
        """The largest image side the classifier benefits from; intake decodes no more than this."""
        ...

    async def classify(self, image: Image.Image) -> Prediction:
        """Score one decoded, upright image (mode "L" or "RGB").

        Raises `ModelNotRunning` or `ClassifierUnavailable` (from `bot.core.errors`).
        """
        ...


@dataclass
class Notice:
    """Something the domain wants to say in the chat. Subclasses carry the facts; the chat
    adapter renders each subclass (Block Kit in Slack, text in the shell)."""

    text: str = ""  # plain-text fallback; renderers may compose a better one
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PostedMessage:
    channel: str
    ts: str


class Outbox(Protocol):
    """The chat, as the domain sees it: post and update messages, react, attach images."""

    async def post(
        self, channel: str, notice: Notice, *, thread_ts: str | None = None
    ) -> PostedMessage: ...

    async def post_reply(
        self, channel: str, thread_ts: str, notice: Notice, *, key: str, check_thread: bool
    ) -> int:
        """Post the notice's parts into a thread, each tagged with `key` and its part number.

        With `check_thread`, read the thread first and post only the parts not already there
        (a reply interrupted by a crash or a failed call). Returns how many parts it posted.
        """
        ...

    async def update(self, message: PostedMessage, notice: Notice) -> None: ...

    async def react(self, channel: str, ts: str, add: str, remove: str | None = None) -> None:
        """Add emoji reaction `add` to a message, first removing `remove` if given."""
        ...

    async def attach_images(
        self, channel: str, thread_ts: str, images: Sequence[tuple[str, bytes]]
    ) -> None:
        """Upload PNGs (file name, bytes) into a thread."""
        ...
