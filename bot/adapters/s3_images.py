"""`ImageStore` on S3: list a prefix, read image headers with ranged GETs, write the manifest.

Image sizes come from the first bytes of each object (`Range: bytes=0-65535`, more when a JPEG
keeps its size after a large EXIF block), so checking thousands of training images reads
megabytes, not gigabytes. boto3 blocks: every call runs in worker threads.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image, UnidentifiedImageError

from bot.core.training_data import ImageHeader, StoredObject

HEADER_BYTES = 64 * 1024
MAX_HEADER_BYTES = 1024 * 1024  # a JPEG whose size isn't in its first MB is refused
PROBE_THREADS = 16

MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


class S3Images:
    def __init__(self, client: Callable[[], Any], *, threads: int = PROBE_THREADS) -> None:
        self._client = client  # called on first use: the client is built lazily
        self._threads = threads

    @property
    def client(self) -> Any:
        return self._client()

    async def bucket_region(self, bucket: str) -> str:
        response = await asyncio.to_thread(self.client.get_bucket_location, Bucket=bucket)
        location = response.get("LocationConstraint")
        # us-east-1 answers None (or ""); very old buckets in eu-west-1 answer "EU".
        return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)

    async def list_objects(self, bucket: str, prefix: str) -> list[StoredObject]:
        return await asyncio.to_thread(self._list, bucket, prefix)

    def _list(self, bucket: str, prefix: str) -> list[StoredObject]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [
            StoredObject(o["Key"], int(o.get("Size", 0)))
            for page in pages
            for o in page.get("Contents", [])
        ]

    async def probe(self, bucket: str, keys: Sequence[str]) -> dict[str, ImageHeader | None]:
        if not keys:
            return {}
        return await asyncio.to_thread(self._probe_all, bucket, list(keys))

    def _probe_all(self, bucket: str, keys: list[str]) -> dict[str, ImageHeader | None]:
        client = self.client
        with ThreadPoolExecutor(max_workers=min(self._threads, len(keys))) as pool:
            headers = pool.map(lambda key: _probe(client, bucket, key), keys)
            return dict(zip(keys, headers, strict=True))

    async def put_text(self, bucket: str, key: str, text: str, content_type: str) -> None:
        await asyncio.to_thread(
            self.client.put_object,
            Bucket=bucket,
            Key=key,
            Body=text.encode("utf-8"),
            ContentType=content_type,
        )

    async def get_json(self, bucket: str, key: str) -> Any:
        return await asyncio.to_thread(
            lambda: json.loads(_read(self.client, Bucket=bucket, Key=key))
        )


def _probe(client: Any, bucket: str, key: str) -> ImageHeader | None:
    """The image's format and size from its first bytes; None when it isn't an image."""
    size = HEADER_BYTES
    while True:
        data = _read(client, Bucket=bucket, Key=key, Range=f"bytes=0-{size - 1}")
        header = read_header(data)
        complete = len(data) < size  # the whole object was read
        if header is not None or complete or size >= MAX_HEADER_BYTES:
            return header
        size = min(size * 4, MAX_HEADER_BYTES)


def _read(client: Any, **params: Any) -> bytes:
    """An object's bytes (`params`: GetObject's), its stream closed even when reading fails."""
    body = client.get_object(**params)["Body"]
    try:
        return body.read()
    finally:
        body.close()


def read_header(data: bytes) -> ImageHeader | None:
    """Format and dimensions from an image's leading bytes (no pixel data is decoded)."""
    kind = next((name for magic, name in MAGIC if data.startswith(magic)), None)
    if kind is None:
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            kind = image.format or kind
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None
    return ImageHeader(kind, width, height)
