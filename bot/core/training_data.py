"""From an S3 folder tree to a Ground Truth classification manifest, and the rules it must pass.

`s3://bucket/prefix/Normal/…` and `s3://bucket/prefix/Pneumonia/…` hold the images; the first
folder under the prefix is the label, as the Rekognition console's "use folder names as labels"
does (images in deeper folders take the label of their top folder). Everything here is pure:
the listing and the image headers come from an `ImageStore` adapter.

Limits (Rekognition Custom Labels quotas for training images): PNG or JPEG, 64 to 4096 pixels a
side, at most 15 MB, an aspect ratio of at most 20:1, at least two labels, at most 250,000
images per dataset.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from bot.core.labels import Label

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ACCEPTED_FORMATS = ("JPEG", "PNG")
MIN_SIDE = 64
MAX_SIDE = 4096
MAX_BYTES = 15 * 1024 * 1024
MAX_ASPECT = 20.0
MAX_IMAGES = 250_000
MIN_IMAGES_PER_LABEL = 10  # AWS's advice for a usable classifier; fewer is refused

LABEL_ATTRIBUTE = "cxr-label"
JOB_NAME = "labeling-job/cxr-bot"
VERSION_NAME = re.compile(r"^[a-zA-Z0-9_.\-]{1,255}$")


# --- S3 locations ---------------------------------------------------------------------------
@dataclass(frozen=True)
class S3Uri:
    """`s3://bucket/prefix/`: the prefix is empty or ends with a slash."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, text: str) -> S3Uri:
        """Parse `s3://bucket[/prefix]`; raises ValueError with a readable message."""
        text = text.strip().strip("<>")
        if not text.startswith("s3://"):
            raise ValueError(f"`{text}` isn't an S3 location; write it as s3://bucket/prefix")
        bucket, _, prefix = text[5:].partition("/")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
            raise ValueError(f"`{bucket}` isn't a valid S3 bucket name")
        prefix = prefix.strip("/")
        return cls(bucket, prefix + "/" if prefix else "")

    def key(self, *parts: str) -> str:
        return self.prefix + "/".join(p.strip("/") for p in parts)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int


@dataclass(frozen=True)
class ImageHeader:
    """What an image's first bytes say: its format ("JPEG", "PNG", "GIF"…) and size."""

    format: str
    width: int
    height: int


class ImageStore(Protocol):
    """S3 as the training flow needs it (the adapter: `bot.adapters.s3_images`)."""

    async def bucket_region(self, bucket: str) -> str: ...

    async def list_objects(self, bucket: str, prefix: str) -> list[StoredObject]: ...

    async def probe(self, bucket: str, keys: Sequence[str]) -> dict[str, ImageHeader | None]:
        """Each image's header (a ranged GET), or None when it can't be read as an image."""
        ...

    async def put_text(self, bucket: str, key: str, text: str, content_type: str) -> None: ...

    async def get_json(self, bucket: str, key: str) -> object: ...


# --- the folder tree ------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelledImage:
    key: str
    label: Label
    size: int


# Why a training source is refused; `bot.slack.fleet` words each (with its items, if any).
ProblemReason = Literal[
    "region",  # bucket `source` is in `regions[0]`, the Rekognition project in `regions[1]`
    "empty",  # no files at all in `source`
    "unknown-folders",  # items: (folder, files in it)
    "unlabelled",  # items: (file,) directly under the prefix
    "non-images",  # items: (file,)
    "one-label",  # only `labels[0]` has images (`count`); none under `labels[1:]` in `source`
    "no-images",  # none under the label folders in `source`
    "too-few",  # items: (label, images), under `limit` per label
    "too-many",  # `count` images, over `limit`
    "unreadable",  # items: (file,)
    "wrong-format",  # items: (file, format)
    "too-large",  # items: (file, bytes)
    "outside-limits",  # items: (file, width, height, sides fit: then its aspect is over)
]
Item = tuple[str | int, ...]  # a file or folder a problem concerns, then its facts


@dataclass(frozen=True)
class Problem:
    """One reason to refuse a training source, with the facts its words need and the files or
    folders it concerns."""

    reason: ProblemReason
    items: tuple[Item, ...] = ()
    source: str = ""
    count: int = 0
    limit: int = 0
    labels: tuple[str, ...] = ()
    regions: tuple[str, str] = ("", "")


@dataclass
class FolderScan:
    source: S3Uri
    images: list[LabelledImage] = field(default_factory=list)
    non_images: list[str] = field(default_factory=list)  # keys
    unlabelled: list[str] = field(default_factory=list)  # keys directly under the prefix
    unknown_folders: dict[str, int] = field(default_factory=dict)  # folder -> files in it
    total_files: int = 0

    def counts(self) -> dict[Label, int]:
        counts = dict.fromkeys(Label, 0)
        for image in self.images:
            counts[image.label] += 1
        return counts

    def relative(self, key: str) -> str:
        return key[len(self.source.prefix) :]


def scan(source: S3Uri, objects: Iterable[StoredObject]) -> FolderScan:
    """Sort a listing into labelled images, non-images, stray files and unknown folders."""
    result = FolderScan(source)
    for obj in objects:
        if not obj.key.startswith(source.prefix) or obj.key.endswith("/"):
            continue  # folder markers the console creates
        relative = obj.key[len(source.prefix) :]
        name = relative.rsplit("/", 1)[-1]
        if name.startswith("."):
            continue  # .DS_Store and friends are never images
        result.total_files += 1
        folder, slash, _ = relative.partition("/")
        if not slash:
            result.unlabelled.append(obj.key)
            continue
        label = Label.parse(folder)
        if label is None:
            result.unknown_folders[folder] = result.unknown_folders.get(folder, 0) + 1
            continue
        if not name.lower().endswith(IMAGE_SUFFIXES):
            result.non_images.append(obj.key)
            continue
        result.images.append(LabelledImage(obj.key, label, obj.size))
    return result


def layout_problems(found: FolderScan, min_per_label: int = MIN_IMAGES_PER_LABEL) -> list[Problem]:
    """What is wrong with the folder tree itself (no image needs to be opened to say so)."""
    source = str(found.source)
    if found.total_files == 0:
        return [Problem("empty", source=source)]
    problems: list[Problem] = []
    if found.unknown_folders:
        problems.append(Problem("unknown-folders", tuple(sorted(found.unknown_folders.items()))))
    for reason, keys in (("unlabelled", found.unlabelled), ("non-images", found.non_images)):
        if keys:
            problems.append(Problem(reason, tuple((found.relative(k),) for k in keys)))
    counts = found.counts()
    present = [label for label, n in counts.items() if n]
    if len(present) < len(Label):
        missing = tuple(label.value for label in Label if not counts[label])
        if present:
            labels, count = (present[0].value, *missing), counts[present[0]]
            problems.append(Problem("one-label", source=source, count=count, labels=labels))
        elif not problems:
            problems.append(Problem("no-images", source=source))
    else:
        few = tuple((label.value, n) for label, n in counts.items() if n < min_per_label)
        if few:
            problems.append(Problem("too-few", few, limit=min_per_label))
    if len(found.images) > MAX_IMAGES:
        problems.append(Problem("too-many", count=len(found.images), limit=MAX_IMAGES))
    return problems


def image_problems(found: FolderScan, headers: dict[str, ImageHeader | None]) -> list[Problem]:
    """Images Rekognition would reject: wrong format, too big, too small, too elongated."""
    offenders: dict[ProblemReason, list[Item]] = {
        "unreadable": [],
        "wrong-format": [],
        "too-large": [],
        "outside-limits": [],
    }
    for image in found.images:
        name = found.relative(image.key)
        header = headers.get(image.key)
        if image.size > MAX_BYTES:
            offenders["too-large"].append((name, image.size))
        elif header is None:
            offenders["unreadable"].append((name,))
        elif header.format not in ACCEPTED_FORMATS:
            offenders["wrong-format"].append((name, header.format))
        else:
            w, h = header.width, header.height
            sides_fit = min(w, h) >= MIN_SIDE and max(w, h) <= MAX_SIDE
            if not sides_fit or max(w, h) / max(1, min(w, h)) > MAX_ASPECT:
                offenders["outside-limits"].append((name, w, h, sides_fit))
    return [Problem(reason, tuple(items)) for reason, items in offenders.items() if items]


# --- the manifest ---------------------------------------------------------------------------
def manifest_line(bucket: str, image: LabelledImage, created: datetime) -> str:
    """One SageMaker Ground Truth image-classification line (Rekognition's manifest format)."""
    record = {
        "source-ref": f"s3://{bucket}/{image.key}",
        LABEL_ATTRIBUTE: list(Label).index(image.label),
        f"{LABEL_ATTRIBUTE}-metadata": {
            "confidence": 1,
            "job-name": JOB_NAME,
            "class-name": image.label.value,
            "human-annotated": "yes",
            "creation-date": _gt_date(created),
            "type": "groundtruth/image-classification",
        },
    }
    return json.dumps(record, separators=(",", ":"))


def manifest(bucket: str, images: Iterable[LabelledImage], created: datetime) -> str:
    """The whole manifest: JSON Lines, one image a line, in key order."""
    lines = [manifest_line(bucket, image, created) for image in sorted(images, key=lambda i: i.key)]
    return "\n".join(lines) + "\n"


def _gt_date(when: datetime) -> str:
    """Ground Truth's creation-date: UTC, milliseconds, no zone suffix."""
    utc = when.astimezone(UTC) if when.tzinfo else when
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}"


def valid_version_name(name: str) -> bool:
    return bool(VERSION_NAME.fullmatch(name))
