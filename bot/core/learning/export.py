"""Reviewed images out for retraining: fetched again from Slack, de-identified, written under
`Normal/` and `Pneumonia/` (the layout `/cxr train` and `cxr train DIR` read), with a manifest.

De-identification: the pixels are decoded and written into a fresh PNG, so no EXIF, PNG text,
ICC profile, comment or file name survives; names are a hash of the Slack message (the
grouping key: one message's images stay together, so a patient-level split remains possible)
and of the file. Text burned into the pixels is not removed: only images from a workspace
cleared for them should be exported. "Not assessable" reviews are not exported. Every exported
case is recorded, so no figure read as held out counts it afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

from bot.core.clock import Clock
from bot.core.errors import UserFacingError
from bot.core.imaging import decode
from bot.core.learning.ports import ReviewLog
from bot.core.ports import FileFetcher, Notice

log = logging.getLogger(__name__)

EXPORT_MAX_SIDE = 4096  # Rekognition's largest training image side
MANIFEST = "manifest.json"


class ExportSink(Protocol):
    """Where exported files go: an S3 prefix or a local folder."""

    async def write(self, key: str, data: bytes, content_type: str) -> None: ...


@dataclass
class ExportResult(Notice):
    destination: str = ""
    written: dict[str, int] = field(default_factory=dict)  # label → images written
    missing: list[str] = field(default_factory=list)  # "group/file: why", for each not fetched
    not_assessable: int = 0


def grouping_key(channel: str, ts: str) -> str:
    """A stable, non-reversible name for the Slack message an image came in."""
    return hashlib.sha256(f"{channel}/{ts}".encode()).hexdigest()[:16]


def file_key(file_id: str) -> str:
    return hashlib.sha256(file_id.encode()).hexdigest()[:10]


def deidentified_png(data: bytes, max_pixels: int) -> bytes:
    """The image's pixels alone, as a new grayscale PNG: no metadata of any kind carries over."""
    image = decode(data, max_side=EXPORT_MAX_SIDE, max_pixels=max_pixels).convert("L")
    clean = Image.frombytes("L", image.size, image.tobytes())
    buffer = io.BytesIO()
    clean.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


class Exporter:
    def __init__(
        self,
        reviews: ReviewLog,
        fetcher: FileFetcher,
        clock: Clock,
        *,
        max_bytes: int,
        max_pixels: int,
    ) -> None:
        self.reviews = reviews
        self.fetcher = fetcher
        self.clock = clock
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels

    async def exportable(self) -> int:
        """Reviewed cases with a Normal or Pneumonia label (what an export would write)."""
        images = await self.reviews.off_loop(self.reviews.reviewed_images)
        return sum(1 for i in images if i.review.label.label is not None)

    async def export(self, sink: ExportSink, destination: str) -> ExportResult:
        result = ExportResult(destination=destination)
        entries, done = [], []
        for image in await self.reviews.off_loop(self.reviews.reviewed_images):
            review = image.review
            label = review.label.label
            if label is None:
                result.not_assessable += 1
                continue
            case = review.case
            group = grouping_key(case.channel, case.ts)
            name = f"slack-{group}-{file_key(case.file_id)}"
            try:
                if image.ref is None:
                    raise UserFacingError("the upload is no longer on record")
                data = await self.fetcher.fetch(image.ref, self.max_bytes)
                png = await asyncio.to_thread(deidentified_png, data, self.max_pixels)
            except UserFacingError as exc:
                result.missing.append(f"{name}: {exc.reply}")
                continue
            except Exception as exc:
                log.warning(
                    "export.failed", extra={"file_id": case.file_id, "error": type(exc).__name__}
                )
                result.missing.append(f"{name}: {type(exc).__name__}")
                continue
            key = f"{label.value}/{name}.png"
            await sink.write(key, png, "image/png")
            entries.append({"key": key, "label": label.value, "group": group})
            done.append(case)
            result.written[label.value] = result.written.get(label.value, 0) + 1
        now = self.clock.now()
        manifest = {
            "exported_at": now.isoformat(),
            "written": entries,
            "not_fetched": result.missing,
            "not_assessable_skipped": result.not_assessable,
            "note": "Grouping key = the Slack message; keep a group on one side of any split. "
            "Text burned into the pixels is not removed.",
        }
        await sink.write(MANIFEST, json.dumps(manifest, indent=2).encode(), "application/json")
        await self.reviews.off_loop(self.reviews.mark_exported, done, destination, now)
        result.text = export_summary(result)
        return result


def export_summary(result: ExportResult) -> str:
    total = sum(result.written.values())
    counts = ", ".join(f"{n} {label}" for label, n in sorted(result.written.items())) or "none"
    text = f"Exported {total} reviewed images to {result.destination} ({counts}), with {MANIFEST}."
    if result.missing:
        text += f" {len(result.missing)} could not be fetched (deleted in Slack?): listed in the manifest."
    if result.not_assessable:
        text += f" {result.not_assessable} reviewed as not assessable were left out."
    return text
