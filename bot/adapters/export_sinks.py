"""Where `cxr export` writes: an S3 prefix (boto3 in a worker thread) or a local folder."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any


class S3Sink:
    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    async def write(self, key: str, data: bytes, content_type: str) -> None:
        full = f"{self.prefix}/{key}" if self.prefix else key
        await asyncio.to_thread(
            self.client.put_object,
            Bucket=self.bucket,
            Key=full,
            Body=data,
            ContentType=content_type,
        )


class FolderSink:
    def __init__(self, root: Path) -> None:
        self.root = root

    async def write(self, key: str, data: bytes, content_type: str) -> None:
        path = self.root / key
        await asyncio.to_thread(_write, path, data)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
