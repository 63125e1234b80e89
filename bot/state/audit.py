"""The audit log: who did what to the model, when, and how it ended."""

from __future__ import annotations

from datetime import datetime

from bot.core.fleet.state import AuditEntry
from bot.state.db import Database

__all__ = ["AuditEntry", "AuditLog"]


class AuditLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, at: datetime, actor: str, action: str, target: str, result: str) -> None:
        self._db.execute(
            "INSERT INTO audit_log (at, actor, action, target, result) VALUES (?, ?, ?, ?, ?)",
            (at.isoformat(), actor, action, target, result),
        )

    def recent(self, limit: int = 5) -> list[AuditEntry]:
        rows = self._db.query("SELECT * FROM audit_log ORDER BY id DESC LIMIT ?", (limit,))
        return [
            AuditEntry(
                datetime.fromisoformat(r["at"]), r["actor"], r["action"], r["target"], r["result"]
            )
            for r in rows
        ]
