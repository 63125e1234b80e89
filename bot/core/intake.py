"""Intake: from a chat message with images to one reply in its thread, exactly once.

The chat adapter hands over an `Upload` before acknowledging it; intake claims it in the store
(duplicates and retries stop here) under a lease, then downloads, decodes, screens and
classifies each image a few at a time, and answers with one `UploadReply` (one or more message
parts) in the message's thread. After a crash, the upload is resumed once its lease lapses, and
only the reply parts missing from the thread are posted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from PIL import Image

from bot.core.clock import Clock
from bot.core.errors import PatientDataRefused, Undeliverable, UnsupportedFile, UserFacingError
from bot.core.heatmaps import heatmap_name
from bot.core.imaging import decode
from bot.core.labels import Label, Verdict, decide
from bot.core.leases import UPLOAD_LEASE_PREFIX, LeaseTerms, new_owner, upload_lease
from bot.core.phi import find_phi
from bot.core.ports import (
    Classifier,
    FileDescriber,
    FileFetcher,
    ImageRef,
    Notice,
    Outbox,
    Upload,
)
from bot.core.review.figures import Answer, ModelKey
from bot.core.review.records import CaseKey

log = logging.getLogger(__name__)

REACTION_WORKING = "eyes"
REACTION_NORMAL = "white_check_mark"
REACTION_PNEUMONIA = "large_orange_circle"
REACTION_UNSURE = "grey_question"
REACTION_FAILED = "warning"

DELIVERY_RETRY_DELAYS = (5.0, 30.0, 120.0)
STORE_RETRY_DELAYS = (1.0, 2.0, 4.0)
# Slack waits 3 s for an acknowledgement; a claim that takes longer is refused (Slack retries).
CLAIM_TIMEOUT_S = 2.0
# How long an upload stays with an instance that stopped renewing (crashed, hung, cut off).
UPLOAD_LEASE = LeaseTerms(timedelta(seconds=30))

IMAGE_EXTENSIONS = frozenset(
    {"jpg", "jpeg", "png", "tif", "tiff", "bmp", "webp", "gif", "heic", "heif", "dcm", "dicom"}
)
EXPORT_MIMETYPES = frozenset({"application/pdf", "application/dicom"})
# PACS exports come as `IM000001` or `1.2.840…7` typed application/octet-stream: they may be
# DICOM, which only their content (not their name) tells, so they are downloaded and checked.
MAYBE_DICOM_MIMETYPES = frozenset({"application/octet-stream", "binary/octet-stream", ""})


def is_image_like(ref: ImageRef) -> bool:
    """Files the bot answers for in channels: images, the PDFs/DICOMs X-rays come as, and
    files that may be DICOM (no extension, or an untyped binary)."""
    extension = ref.name.rsplit(".", 1)[-1].lower() if "." in ref.name else ""
    return (
        ref.mimetype.startswith("image/")
        or ref.mimetype in EXPORT_MIMETYPES
        or ref.mimetype in MAYBE_DICOM_MIMETYPES
        or extension in IMAGE_EXTENSIONS
        or extension in ("pdf", "")
    )


@dataclass(frozen=True)
class FileOutcome:
    ref: ImageRef
    verdict: Verdict | None = None
    error: UserFacingError | None = None
    phi: tuple[str, ...] = ()  # kinds of patient identifier the file carries, never values

    @property
    def code(self) -> str:
        if self.verdict is not None:
            return self.verdict.label.value if self.verdict.label else "Uncertain"
        return self.error.code if self.error else "error"


@dataclass
class UploadReply(Notice):
    """The answer to one message: an outcome per file, in the order they were posted."""

    outcomes: list[FileOutcome] = field(default_factory=list)
    message_ts: str = ""  # the posted message the verdicts answer (a review names it)
    reviewable: bool = False  # show review buttons under each verdict


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


class UploadLedger(Protocol):
    """Where uploads are claimed, leased and marked answered (SQLite: `bot.state.uploads`)."""

    async def claim(self, upload: Upload, now: datetime, owner: str, ttl: timedelta) -> str:
        """ "new", "taken" (pending, its lease ours or expired) or "" (not ours to answer)."""
        ...

    async def resumable(self, now: datetime, limit: int = 100) -> list[Upload]: ...

    async def take(self, upload: Upload, now: datetime, owner: str, ttl: timedelta) -> bool: ...

    async def record(
        self,
        upload: Upload,
        outcomes: Sequence[tuple[str, str, str | None, str | None]],
        now: datetime,
    ) -> None: ...

    async def mark_answered(self, upload: Upload, now: datetime, owner: str) -> None: ...


class LeaseKeeper(Protocol):
    """Renewal and hand-back of leases (SQLite: `bot.state.leases.LeaseStore`)."""

    async def renew(
        self, keys: Iterable[str], owner: str, now: datetime, ttl: timedelta
    ) -> list[str]: ...

    async def release(self, keys: Iterable[str], owner: str) -> None: ...


class AnswerLog(Protocol):
    """Where each model's own answer is kept, for the figures reviews are scored against."""

    async def record_answers(self, answers: Iterable[Answer], at: datetime) -> None: ...


def model_answers(case: CaseKey, verdict: Verdict) -> list[Answer]:
    """One answer per model that classified the image (two when both models did)."""
    return [
        Answer(case, ModelKey(v.model.kind, v.model.version), v.top, verdict.uncertain)
        for v in verdict.answers()
    ]


class ClaimFailed(Exception):
    """The upload could not be recorded, so Slack must not be told it arrived (it retries)."""


class Intake:
    """Claims uploads before they are acknowledged, answers each once, and resumes the ones
    an instance that stopped or died left unanswered (once their lease has expired)."""

    def __init__(
        self,
        *,
        store: UploadLedger,
        leases: LeaseKeeper,
        fetcher: FileFetcher,
        classifier: Classifier,
        outbox: Outbox,
        clock: Clock,
        guard: Callable[[Image.Image], None],
        threshold: float,
        max_bytes: int,
        max_pixels: int,
        concurrency: int,
        describer: FileDescriber | None = None,
        refuse_phi: bool = False,
        owner: str | None = None,
        lease: LeaseTerms = UPLOAD_LEASE,
        claim_timeout_s: float = CLAIM_TIMEOUT_S,
        answers: AnswerLog | None = None,
        reviewable: bool = False,
    ) -> None:
        self.store = store
        self.answers = answers
        self.reviewable = reviewable
        self.leases = leases
        self.fetcher = fetcher
        self.describer = describer
        self.refuse_phi = refuse_phi
        self.classifier = classifier
        self.outbox = outbox
        self.clock = clock
        self.guard = guard
        self.threshold = threshold
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.owner = owner or new_owner()
        self.lease = lease
        self.claim_timeout_s = claim_timeout_s
        self._slots = asyncio.Semaphore(concurrency)
        self._working: dict[str, asyncio.Task[None]] = {}
        self._taken: set[str] = set()  # accepted over an earlier claim: check the thread

    # --- entry points -----------------------------------------------------------------------
    async def accept(self, upload: Upload) -> bool:
        """Record the upload before Slack hears that it arrived (the caller then acks).

        True when this instance should answer it now (call `start`); False for an upload
        already answered or being answered: a Slack retry, a duplicate delivery, a message
        answered before a restart. Raises `ClaimFailed` when the claim cannot be written in
        time (a lock held elsewhere, a full disk, an I/O error): the caller must not ack.
        """
        if not upload.files:
            return False
        try:
            claim = await asyncio.wait_for(
                self.store.claim(upload, self.clock.now(), self.owner, self.lease.ttl),
                self.claim_timeout_s,
            )
        except Exception as exc:
            log.error(
                "upload.claim_failed: NOT acknowledged, Slack will deliver it again (about at"
                " once, after 1 min, after 5 min); Slack disables event delivery for an app"
                " whose deliveries keep failing, so fix the database or disk now",
                extra={
                    "channel": upload.channel,
                    "ts": upload.ts,
                    "error": (
                        f"no answer from the database within {self.claim_timeout_s:g} s"
                        if isinstance(exc, TimeoutError)
                        else f"{type(exc).__name__}: {exc}"[:200]
                    ),
                },
            )
            raise ClaimFailed(type(exc).__name__) from exc
        if not claim or upload.key in self._working:
            log.info("upload.duplicate", extra={"channel": upload.channel, "ts": upload.ts})
            return False
        if claim == "taken":  # part of its reply may be in the thread already
            self._taken.add(upload.key)
        log.info(
            "upload.accepted",
            extra={"channel": upload.channel, "ts": upload.ts, "files": len(upload.files)},
        )
        return True

    def start(self, upload: Upload, *, resumed: bool = False) -> None:
        """Answer an accepted upload in the background."""
        if upload.key in self._working:
            return
        resumed = resumed or upload.key in self._taken
        self._taken.discard(upload.key)
        task = asyncio.create_task(
            self._answer(upload, resumed), name=f"upload {upload.channel}/{upload.ts}"
        )
        self._working[upload.key] = task
        task.add_done_callback(lambda _: self._working.pop(upload.key, None))

    async def submit(self, upload: Upload) -> bool:
        """Accept and start in one go (when no acknowledgement sits between the two)."""
        if not await self.accept(upload):
            return False
        self.start(upload)
        return True

    async def resume(self) -> int:
        """Take over pending uploads nobody holds a lease on: left by a run that stopped or
        died, or by an answer that could not be delivered yet. Each is answered at most once
        in its thread (the reply parts already there are not posted again)."""
        now = self.clock.now()
        taken = 0
        for upload in await self.store.resumable(now):
            if upload.key in self._working:
                continue
            if await self.store.take(upload, now, self.owner, self.lease.ttl):
                log.info("upload.resumed", extra={"channel": upload.channel, "ts": upload.ts})
                self.start(upload, resumed=True)
                taken += 1
        return taken

    async def keep_leases(self) -> None:
        """Renew the leases on the uploads in work; resume those whose owner went away."""
        interval = self.lease.renew_every.total_seconds()
        while True:
            await self.clock.sleep(interval)
            try:
                await self._renew()
                await self.resume()
            except Exception as exc:  # a locked or full disk: try again next round
                log.warning("upload.lease_round_failed", extra={"error": type(exc).__name__})

    async def _renew(self) -> None:
        if not self._working:
            return
        lost = await self.leases.renew(
            [upload_lease(k) for k in self._working], self.owner, self.clock.now(), self.lease.ttl
        )
        for key in lost:  # another instance took it over: it answers; we stop
            upload_key = key.removeprefix(UPLOAD_LEASE_PREFIX)
            log.warning("upload.lease_lost", extra={"upload": upload_key})
            task = self._working.get(upload_key)
            if task is not None:
                task.cancel()

    async def drain(self) -> None:
        """Wait until every upload in flight is answered (tests, benchmarks, shutdown)."""
        while self._working:
            await asyncio.wait(list(self._working.values()))

    async def stop(self, drain_seconds: float) -> None:
        """Give uploads in flight a moment, then hand the rest back: their leases are
        released so another instance (or the next start) resumes them at once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_seconds
        while self._working and (left := deadline - loop.time()) > 0:
            await asyncio.wait(list(self._working.values()), timeout=left)
        unfinished = list(self._working)
        if unfinished:
            log.warning("intake.drain_timeout", extra={"in_flight": len(unfinished)})
        tasks = list(self._working.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if unfinished:
            try:
                await self.leases.release([upload_lease(k) for k in unfinished], self.owner)
            except Exception as exc:
                log.warning("intake.release_failed", extra={"error": repr(exc)[:200]})

    @property
    def in_flight(self) -> int:
        return len(self._working)

    # --- the work ---------------------------------------------------------------------------
    async def _answer(self, upload: Upload, resumed: bool) -> None:
        try:
            await self._quietly(self.outbox.react(upload.channel, upload.ts, REACTION_WORKING))
            refs = await self._described(upload)
            if not refs:  # a Slack Connect file that turned out not to be an image
                await self._mark_answered(upload)
                return
            outcomes = list(await asyncio.gather(*(self._screen(ref) for ref in refs)))
            await self._record(upload, outcomes)
            reply = UploadReply(outcomes=outcomes, message_ts=upload.ts, reviewable=self.reviewable)
            posted = await self._deliver(upload, reply, resumed)
            if posted is None:
                return
            await self._mark_answered(upload)
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
            if heatmaps and posted:  # nothing posted: a crash came after the reply, not before
                await self._quietly(
                    self.outbox.attach_images(upload.channel, upload.thread_ts, heatmaps)
                )
            await self._quietly(
                self.outbox.react(
                    upload.channel, upload.ts, outcome_reaction(outcomes), remove=REACTION_WORKING
                )
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("upload.crashed", extra={"channel": upload.channel, "ts": upload.ts})

    async def _described(self, upload: Upload) -> list[ImageRef]:
        """The upload's files, with the details of those the event only named (looked up
        after the claim, so the acknowledgement never waits for Slack)."""
        refs = []
        for ref in upload.files:
            if not ref.url and self.describer is not None:
                ref = await self.describer.describe(ref) or ref
                if not upload.direct and ref.url and not is_image_like(ref):
                    continue  # in a channel, only images are the bot's business
            refs.append(ref)
        return refs

    async def _record(self, upload: Upload, outcomes: list[FileOutcome]) -> None:
        """The classification log (cost per image, idle signals): never worth a lost reply."""
        rows = [
            (
                o.ref.file_id,
                o.code,
                o.verdict.model.kind if o.verdict else None,
                o.verdict.model.version if o.verdict else None,
            )
            for o in outcomes
        ]
        now = self.clock.now()
        try:
            await self.store.record(upload, rows, now)
            if self.answers is not None:
                answers = [
                    answer
                    for o in outcomes
                    if o.verdict is not None
                    for answer in model_answers(
                        CaseKey(upload.channel, upload.ts, o.ref.file_id), o.verdict
                    )
                ]
                await self.answers.record_answers(answers, now)
        except Exception as exc:
            log.warning(
                "upload.record_failed", extra={"ts": upload.ts, "error": type(exc).__name__}
            )

    async def _still_ours(self, upload: Upload) -> bool:
        """Renew the upload's lease right before posting, and say whether it is still ours.

        A stall longer than the lease (a loaded host, a long GC) lets another instance resume
        the upload; it reads the thread, finds nothing yet, and answers. Checking here, with a
        fresh lease for the post, keeps the stalled instance from answering a second time. If
        the check itself fails, post anyway: the lease is most likely still ours.
        """
        try:
            lost = await self.leases.renew(
                [upload_lease(upload.key)], self.owner, self.clock.now(), self.lease.ttl
            )
        except Exception as exc:
            log.warning("upload.lease_check_failed", extra={"error": type(exc).__name__})
            return True
        if lost:
            log.warning("upload.lease_lost", extra={"upload": upload.key})
        return not lost

    async def _mark_answered(self, upload: Upload) -> None:
        """Retried through a short lock; if the database stays unwritable the lease lapses
        and the resumed upload finds its reply already in the thread."""
        for delay in (*STORE_RETRY_DELAYS, None):
            try:
                await self.store.mark_answered(upload, self.clock.now(), self.owner)
                return
            except Exception as exc:
                log.warning(
                    "upload.mark_answered_failed",
                    extra={"ts": upload.ts, "error": type(exc).__name__},
                )
                if delay is None:
                    return
                await self.clock.sleep(delay)

    async def _deliver(self, upload: Upload, reply: UploadReply, resumed: bool) -> int | None:
        """Post the reply, retrying through longer outages than the Slack client's own retries.

        Returns how many parts were posted, or None when the upload must not go on (the reply
        can never be delivered, or not yet: then it stays pending and is resumed later).
        """
        check_thread = resumed
        for delay in (*DELIVERY_RETRY_DELAYS, None):
            if not await self._still_ours(upload):
                return None  # our lease lapsed (a stall) and another instance answers it
            try:
                return await self.outbox.post_reply(
                    upload.channel,
                    upload.thread_ts,
                    reply,
                    key=upload.key,
                    check_thread=check_thread,
                )
            except Undeliverable as exc:
                log.warning(
                    "upload.undeliverable",
                    extra={"channel": upload.channel, "ts": upload.ts, "error": str(exc)},
                )
                await self._mark_answered(upload)  # nobody can read it
                return None
            except Exception as exc:
                log.warning(
                    "upload.reply_failed",
                    extra={"channel": upload.channel, "ts": upload.ts, "error": type(exc).__name__},
                )
                check_thread = True  # a part may have landed although the call failed
                if delay is None:
                    return None  # stays pending: resumed once its lease lapses
                await self.clock.sleep(delay)
        return None

    async def _screen(self, ref: ImageRef) -> FileOutcome:
        async with self._slots:
            phi: tuple[str, ...] = ()
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
                phi = tuple(await asyncio.to_thread(find_phi, data))
                if phi:  # field kinds only: never a value, in logs or anywhere else
                    log.info("image.patient_data", extra={"file_id": ref.file_id, "kinds": phi})
                if phi and self.refuse_phi:
                    raise PatientDataRefused(
                        "I don't read files that carry patient identifiers here, so this one "
                        "wasn't classified."
                    )
                image = await asyncio.to_thread(self._prepare, data)
                del data
                prediction = await self.classifier.classify(image)
                return FileOutcome(ref, verdict=decide(prediction, self.threshold), phi=phi)
            except UserFacingError as error:
                log.info("image.refused", extra={"file_id": ref.file_id, "reason": error.code})
                return FileOutcome(ref, error=error, phi=phi)
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
