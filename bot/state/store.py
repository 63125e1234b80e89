"""The fleet's `Store` port (`bot.core.fleet.state`) on SQLite: one adapter per database file,
its schema the numbered migrations in `bot.state.migrations`."""

from __future__ import annotations

from bot.state.audit import AuditLog
from bot.state.cost_guard import CostGuardStore
from bot.state.db import Database
from bot.state.leases import LeaseStore
from bot.state.operations import OperationStore
from bot.state.runs import RunStore
from bot.state.uploads import UploadStore


class SqliteStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.operations = OperationStore(db)
        self.runs = RunStore(db)
        self.guard = CostGuardStore(db)
        self.audit = AuditLog(db)
        self.uploads = UploadStore(db)
        self.leases = LeaseStore(db)
