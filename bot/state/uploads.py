"""Which uploads have been taken on and answered: the bot's exactly-once memory.

An upload (one chat message with files) is claimed before any work starts; a claim that
already exists means a Slack retry, a duplicate delivery or a replay after restart, and is
dropped. Claimed but unanswered uploads are resumed after a restart, so none is lost.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime

from bot.core.ports import ImageRef, Upload
from bot.state.db import Database


class UploadStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def claim(self, upload: Upload, now: datetime) -> bool:
        """Record the upload as ours to answer; False if it was already claimed."""
        files = json.dumps([asdict(ref) for ref in upload.files])
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO uploads (channel, ts, thread_ts, user, files, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (upload.channel, upload.ts, upload.thread_ts, upload.user, files, now.isoformat()),
        )
        return cursor.rowcount == 1

    def pending(self) -> list[Upload]:
        rows = self._db.query(
            "SELECT * FROM uploads WHERE state = 'pending' ORDER BY received_at, ts"
        )
        return [
            Upload(
                channel=row["channel"],
                ts=row["ts"],
                thread_ts=row["thread_ts"],
                user=row["user"],
                files=tuple(ImageRef(**ref) for ref in json.loads(row["files"])),
            )
            for row in rows
        ]

    def record(
        self,
        upload: Upload,
        file_id: str,
        outcome: str,
        now: datetime,
        model_kind: str | None = None,
        model_version: str | None = None,
    ) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO classifications"
            " (channel, ts, file_id, outcome, model_kind, model_version, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                upload.channel,
                upload.ts,
                file_id,
                outcome,
                model_kind,
                model_version,
                now.isoformat(),
            ),
        )

    def mark_answered(self, upload: Upload, now: datetime) -> None:
        self._db.execute(
            "UPDATE uploads SET state = 'answered', answered_at = ? WHERE channel = ? AND ts = ?",
            (now.isoformat(), upload.channel, upload.ts),
        )

    def is_answered(self, channel: str, ts: str) -> bool:
        row = self._db.one("SELECT state FROM uploads WHERE channel = ? AND ts = ?", (channel, ts))
        return bool(row and row["state"] == "answered")

    def classified_count(
        self, model_kind: str, since: datetime, until: datetime, model_version: str | None = None
    ) -> int:
        """Images a model kind (one version of it, if given) answered in [since, until): for
        cost per classified image."""
        where, params = _model_filter(model_kind, model_version)
        row = self._db.one(
            f"SELECT COUNT(*) AS n FROM classifications WHERE {where} AND at >= ? AND at < ?",
            (*params, since.isoformat(), until.isoformat()),
        )
        return int(row["n"]) if row else 0

    def last_classified_at(
        self, model_kind: str, model_version: str | None = None
    ) -> datetime | None:
        """When a model last answered an image for the bot (an idle signal for the cost guard)."""
        where, params = _model_filter(model_kind, model_version)
        row = self._db.one(f"SELECT MAX(at) AS at FROM classifications WHERE {where}", params)
        return datetime.fromisoformat(row["at"]) if row and row["at"] else None


def _model_filter(model_kind: str, model_version: str | None) -> tuple[str, tuple[str, ...]]:
    """The WHERE clause for one model kind, or one version of it."""
    if model_version is None:
        return "model_kind = ?", (model_kind,)
    return "model_kind = ? AND model_version = ?", (model_kind, model_version)
