"""Intake: from a chat message with images to one reply in its thread, exactly once.

The chat adapter hands over an `Upload`; intake claims it in the store (duplicates and retries
stop here), then downloads, decodes, screens and classifies each image a few at a time, and
answers with one `UploadReply` in the message's thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from bot.core.clock import Clock
from bot.core.errors import Undeliverable, UnsupportedFile, UserFacingError
from bot.core.heatmaps import heatmap_name
from bot.core.imaging import decode
from bot.core.labels import Label, Verdict, decide
from bot.core.ports import Classifier, FileFetcher, ImageRef, Notice, Outbox, Upload
from bot.state.uploads import UploadStore

log = logging.getLogger(__name__)

REACTION_WORKING = "eyes"
REACTION_NORMAL = "white_check_mark"
REACTION_PNEUMONIA = "large_orange_circle"
REACTION_UNSURE = "grey_question"
REACTION_FAILED = "warning"

DELIVERY_RETRY_DELAYS = (5.0, 30.0, 120.0)

IMAGE_EXTENSIONS = frozenset(
    {"jpg", "jpeg", "png", "tif", "tiff", "bmp", "webp", "gif", "heic", "heif", "dcm", "dicom"}
)
EXPORT_MIMETYPES = frozenset({"application/pdf", "application/dicom"})


def is_image_like(ref: ImageRef) -> bool:
    """Files the bot answers for in channels: images, and the PDFs/DICOMs X-rays come as."""
    extension = ref.name.rsplit(".", 1)[-1].lower() if "." in ref.name else ""
    return (
        ref.mimetype.startswith("image/")
        or ref.mimetype in EXPORT_MIMETYPES
        or extension in IMAGE_EXTENSIONS
        or extension == "pdf"
    )


@dataclass(frozen=True)
class FileOutcome:
    ref: ImageRef
    verdict: Verdict | None = None
    error: UserFacingError | None = None

    @property
    def code(self) -> str:
        if self.verdict is not None:
            return self.verdict.label.value if self.verdict.label else "Uncertain"
        return self.error.code if self.error else "error"


@dataclass
class UploadReply(Notice):
    """The answer to one message: an outcome per file, in the order they were posted."""

    outcomes: list[FileOutcome] = field(default_factory=list)


def outcome_reaction(outcomes: list[FileOutcome]) -> str:
    """One emoji for the whole message: what a glance at the channel should tell."""
    verdicts = [o.verdict for o in outcomes if o.verdict is not None]
    if any(v.label is Label.PNEUMONIA for v in verdicts):
        return REACTION_PNEUMONIA
    if any(o.error is not None for o in outcomes) and not verdicts:
        return REACTION_FAILED
    if any(v.uncertain for v in verdicts) or any(o.error is not None for o in outcomes):
        return REACTION_UNSURE
    return REACTION_NORMAL


class Intake:
    def __init__(
        self,
        *,
        store: UploadStore,
        fetcher: FileFetcher,
        classifier: Classifier,
        outbox: Outbox,
        clock: Clock,
        guard: Callable[[Image.Image], None],
        threshold: float,
        max_bytes: int,
        max_pixels: int,
        concurrency: int,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.classifier = classifier
        self.outbox = outbox
        self.clock = clock
        self.guard = guard
        self.threshold = threshold
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    # --- entry points -----------------------------------------------------------------------
    def submit(self, upload: Upload) -> bool:
        """Claim the upload and start answering it in the background.

        Returns False (and does nothing) for an upload already claimed: a Slack retry, a
        duplicate delivery, or a message answered before a restart.
        """
        if not upload.files:
            return False
        if not self.store.claim(upload, self.clock.now()):
            log.info("upload.duplicate", extra={"channel": upload.channel, "ts": upload.ts})
            return False
        log.info(
            "upload.accepted",
            extra={"channel": upload.channel, "ts": upload.ts, "files": len(upload.files)},
        )
        self._spawn(upload)
        return True

    def resume(self) -> int:
        """Restart the uploads a previous run claimed but did not answer."""
        pending = self.store.pending()
        for upload in pending:
            log.info("upload.resumed", extra={"channel": upload.channel, "ts": upload.ts})
            self._spawn(upload)
        return len(pending)

    async def drain(self) -> None:
        """Wait until every upload in flight is answered (tests, benchmarks, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    # --- the work ---------------------------------------------------------------------------
    def _spawn(self, upload: Upload) -> None:
        task = asyncio.create_task(
            self._answer(upload), name=f"upload {upload.channel}/{upload.ts}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, upload: Upload) -> None:
        try:
            await self._quietly(self.outbox.react(upload.channel, upload.ts, REACTION_WORKING))
            outcomes = list(await asyncio.gather(*(self._screen(ref) for ref in upload.files)))
            now = self.clock.now()
            for outcome in outcomes:
                verdict = outcome.verdict
                self.store.record(
                    upload,
                    outcome.ref.file_id,
                    outcome.code,
                    now,
                    verdict.model.kind if verdict else None,
                    verdict.model.version if verdict else None,
                )
            if not await self._deliver(upload, UploadReply(outcomes=outcomes)):
                return
            self.store.mark_answered(upload, self.clock.now())
            log.info(
                "upload.answered",
                extra={
                    "channel": upload.channel,
                    "ts": upload.ts,
                    "outcomes": [o.code for o in outcomes],
                },
            )
            heatmaps: list[tuple[str, bytes]] = []
            for o in outcomes:
                if o.verdict is not None and o.verdict.heatmap_png:
                    name = heatmap_name(o.ref.name, {n for n, _ in heatmaps})
                    heatmaps.append((name, o.verdict.heatmap_png))
            if heatmaps:
                await self._quietly(
                    self.outbox.attach_images(upload.channel, upload.thread_ts, heatmaps)
                )
            await self._quietly(
                self.outbox.react(
                    upload.channel, upload.ts, outcome_reaction(outcomes), remove=REACTION_WORKING
                )
            )
        except Exception:
            log.exception("upload.crashed", extra={"channel": upload.channel, "ts": upload.ts})

    async def _deliver(self, upload: Upload, reply: UploadReply) -> bool:
        """Post the reply, retrying through longer outages than the Slack client's own retries."""
        for delay in (*DELIVERY_RETRY_DELAYS, None):
            try:
                await self.outbox.post(upload.channel, reply, thread_ts=upload.thread_ts)
                return True
            except Undeliverable as exc:
                log.warning(
                    "upload.undeliverable",
                    extra={"channel": upload.channel, "ts": upload.ts, "error": str(exc)},
                )
                self.store.mark_answered(upload, self.clock.now())  # nobody can read it
                return False
            except Exception as exc:
                log.warning(
                    "upload.reply_failed",
                    extra={"channel": upload.channel, "ts": upload.ts, "error": type(exc).__name__},
                )
                if delay is None:
                    return False  # stays pending: answered on the next start
                await self.clock.sleep(delay)
        return False

    async def _screen(self, ref: ImageRef) -> FileOutcome:
        async with self._slots:
            try:
                if ref.mimetype == "application/pdf" or ref.name.lower().endswith(".pdf"):
                    raise UnsupportedFile(
                        "PDFs aren't supported. Please post the X-ray itself as a PNG or JPEG."
                    )
                if not is_image_like(ref):
                    raise UnsupportedFile(
                        "This isn't an image. I read chest X-rays posted as PNG or JPEG."
                    )
                data = await self.fetcher.fetch(ref, self.max_bytes)
                image = await asyncio.to_thread(self._prepare, data)
                del data
                prediction = await self.classifier.classify(image)
                return FileOutcome(ref, verdict=decide(prediction, self.threshold))
            except UserFacingError as error:
                log.info("image.refused", extra={"file_id": ref.file_id, "reason": error.code})
                return FileOutcome(ref, error=error)
            except Exception:
                log.exception("image.failed", extra={"file_id": ref.file_id})
                return FileOutcome(
                    ref,
                    error=UserFacingError(
                        "Something went wrong on my side while reading this image. "
                        "It's been logged; please try again later."
                    ),
                )

    def _prepare(self, data: bytes) -> Image.Image:
        """Decode (no larger than the classifier needs) and check it is a chest X-ray."""
        image = decode(data, max_side=self.classifier.max_side, max_pixels=self.max_pixels)
        self.guard(image)
        return image

    @staticmethod
    async def _quietly(action) -> None:
        """Cosmetic calls (reactions, heatmaps) must never cost the user their verdict."""
        try:
            await action
        except Exception as exc:
            log.warning("chat.cosmetic_failed", extra={"error": type(exc).__name__})
