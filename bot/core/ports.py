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


class FileFetcher(Protocol):
    async def fetch(self, ref: ImageRef, max_bytes: int) -> bytes:
        """The file's bytes, or a `UserFacingError` (too large, scope missing, download failed)."""
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

    async def update(self, message: PostedMessage, notice: Notice) -> None: ...

    async def react(self, channel: str, ts: str, add: str, remove: str | None = None) -> None:
        """Add emoji reaction `add` to a message, first removing `remove` if given."""
        ...

    async def attach_images(
        self, channel: str, thread_ts: str, images: Sequence[tuple[str, bytes]]
    ) -> None:
        """Upload PNGs (file name, bytes) into a thread."""
        ...
