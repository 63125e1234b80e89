"""Run a wire-test module again with the bot's state in PostgreSQL.

`rerun_on_postgres(module, globals())` copies a module's tests and fixtures into the calling
test file, whose autouse fixture points every `BotHarness` at a database on the tests' own
PostgreSQL server: one database per SQLite path the test names, so a test that restarts the
bot on "the same file" restarts it on the same database.
"""

from __future__ import annotations

import hashlib
from types import ModuleType
from typing import Any

import pytest

from tests import harness
from tests.pgserver import PostgresServer


def rerun_on_postgres(module: ModuleType, namespace: dict[str, Any]) -> None:
    for name, value in vars(module).items():
        if name.startswith("test_") or type(value).__name__ == "FixtureFunctionDefinition":
            namespace[name] = value
    namespace["_state_in_postgres"] = _state_in_postgres


@pytest.fixture(autouse=True)
def _state_in_postgres(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> None:
    original = harness.BotHarness.__init__
    made: dict[str, str] = {}

    def init(self: harness.BotHarness, slack: Any, db_path: Any, **kwargs: Any) -> None:
        if "cxr_database_url" not in kwargs:
            key = str(db_path)
            if key not in made:
                digest = hashlib.sha1(key.encode()).hexdigest()[:20]
                made[key] = postgres_server.create_schema(f"w_{digest}")
            kwargs["cxr_database_url"] = made[key]
        original(self, slack, db_path, **kwargs)

    monkeypatch.setattr(harness.BotHarness, "__init__", init)
