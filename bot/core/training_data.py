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
from typing import Protocol

from bot.core.labels import Label

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ACCEPTED_FORMATS = ("JPEG", "PNG")
MIN_SIDE = 64
MAX_SIDE = 4096
MAX_BYTES = 15 * 1024 * 1024
MAX_ASPECT = 20.0
MAX_IMAGES = 250_000
MIN_IMAGES_PER_LABEL = 10  # AWS's advice for a usable classifier; fewer is refused
SHOWN_ITEMS = 10  # how many offending files a refusal lists before "and N more"

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


@dataclass(frozen=True)
class Problem:
    """One reason to refuse, with the files or folders it concerns."""

    title: str
    items: tuple[str, ...] = ()

    def lines(self, shown: int = SHOWN_ITEMS) -> list[str]:
        listed = list(self.items[:shown])
        if len(self.items) > shown:
            listed.append(f"… and {len(self.items) - shown} more")
        return listed


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
    source = found.source
    labels = " and ".join(f"`{label.value}/`" for label in Label)
    if found.total_files == 0:
        return [
            Problem(
                f"`{source}` is empty: I found no files there. Put the images in {labels} "
                "folders under it."
            )
        ]
    problems: list[Problem] = []
    if found.unknown_folders:
        problems.append(
            Problem(
                f"Folders I don't know as labels (the labels are {labels}):",
                tuple(
                    f"{folder}/ ({n} file{'s' * (n != 1)})"
                    for folder, n in sorted(found.unknown_folders.items())
                ),
            )
        )
    if found.unlabelled:
        problems.append(
            Problem(
                "Files that aren't in a label folder:",
                tuple(found.relative(k) for k in found.unlabelled),
            )
        )
    if found.non_images:
        problems.append(
            Problem(
                "Files that aren't images (Rekognition takes JPEG and PNG):",
                tuple(found.relative(k) for k in found.non_images),
            )
        )
    counts = found.counts()
    present = [label for label, n in counts.items() if n]
    if len(present) < len(Label):
        missing = [label.value for label in Label if not counts[label]]
        if present:
            problems.append(
                Problem(
                    f"Only one label has images ({present[0].value}: {counts[present[0]]}); "
                    f"a classifier needs both. Nothing found under `{source}"
                    + "/`, `".join(missing)
                    + "/`."
                )
            )
        elif not problems:
            problems.append(Problem(f"No images found under {labels} in `{source}`."))
    else:
        few = [
            f"{label.value}: {counts[label]}" for label in Label if counts[label] < min_per_label
        ]
        if few:
            problems.append(
                Problem(
                    f"Too few images to train on (at least {min_per_label} per label):",
                    tuple(few),
                )
            )
    if len(found.images) > MAX_IMAGES:
        problems.append(
            Problem(f"{len(found.images):,} images: a dataset holds at most {MAX_IMAGES:,}.")
        )
    return problems


def image_problems(found: FolderScan, headers: dict[str, ImageHeader | None]) -> list[Problem]:
    """Images Rekognition would reject: wrong format, too big, too small, too elongated."""
    unreadable, wrong_format, too_large, out_of_limits = [], [], [], []
    for image in found.images:
        name = found.relative(image.key)
        if image.size > MAX_BYTES:
            too_large.append(f"{name} ({image.size / 1024 / 1024:.1f} MB)")
            continue
        header = headers.get(image.key)
        if header is None:
            unreadable.append(name)
            continue
        if header.format not in ACCEPTED_FORMATS:
            wrong_format.append(f"{name} (a {header.format} file)")
            continue
        w, h = header.width, header.height
        if min(w, h) < MIN_SIDE or max(w, h) > MAX_SIDE:
            out_of_limits.append(f"{name} ({w}×{h})")
        elif max(w, h) / max(1, min(w, h)) > MAX_ASPECT:
            out_of_limits.append(f"{name} ({w}×{h}, aspect over {MAX_ASPECT:.0f}:1)")
    problems = []
    if unreadable:
        problems.append(Problem("Files I couldn't read as images:", tuple(unreadable)))
    if wrong_format:
        problems.append(Problem("Images that aren't JPEG or PNG:", tuple(wrong_format)))
    if too_large:
        problems.append(Problem("Images over Rekognition's 15 MB limit:", tuple(too_large)))
    if out_of_limits:
        problems.append(
            Problem(
                f"Images outside Rekognition's limits ({MIN_SIDE} to {MAX_SIDE} pixels a side, "
                f"aspect ratio at most {MAX_ASPECT:.0f}:1):",
                tuple(out_of_limits),
            )
        )
    return problems


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
