"""PostgreSQL gets the same numbered migrations as SQLite, and they build the same schema."""

from __future__ import annotations

import asyncio
import sqlite3

import psycopg
import pytest

from bot.state import migrations as sqlite_migrations
from bot.state.postgres import migrations as pg_migrations
from bot.state.postgres.db import PgDatabase


def sqlite_schema(tmp_path) -> dict[str, set[str]]:
    conn = sqlite3.connect(tmp_path / "cxr.db", isolation_level=None)
    sqlite_migrations.migrate(conn)
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    schema = {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")} for t in tables}
    schema["(indexes)"] = {
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        )
    }
    conn.close()
    return schema


def postgres_schema(url: str) -> dict[str, set[str]]:
    schema: dict[str, set[str]] = {}
    with psycopg.connect(url) as conn:
        for table, column in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name <> 'schema_migrations'"
        ):
            schema.setdefault(table, set()).add(column)
        schema["(indexes)"] = {
            r[0]
            for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
                " AND indexname NOT LIKE '%_pkey'"
            )
        }
    return schema


def test_every_sqlite_migration_has_a_postgres_dialect_with_its_number_and_name():
    assert [(m.number, m.name) for m in pg_migrations.MIGRATIONS] == [
        (m.number, m.name) for m in sqlite_migrations.MIGRATIONS
    ]


async def test_both_dialects_build_the_same_tables_columns_and_indexes(tmp_path, postgres_url):
    db = await PgDatabase(postgres_url).open()
    assert db.schema_version == len(sqlite_migrations.MIGRATIONS)
    await db.close()
    assert postgres_schema(postgres_url) == sqlite_schema(tmp_path)


async def test_replicas_starting_together_migrate_once_and_again_is_a_no_op(postgres_url):
    dbs = [PgDatabase(postgres_url) for _ in range(3)]
    await asyncio.gather(*(db.open() for db in dbs))
    assert {db.schema_version for db in dbs} == {len(pg_migrations.MIGRATIONS)}
    async with dbs[0].connection() as conn:
        rows = await (await conn.execute("SELECT number FROM schema_migrations")).fetchall()
    assert sorted(r["number"] for r in rows) == list(range(1, len(pg_migrations.MIGRATIONS) + 1))
    again = await PgDatabase(postgres_url).open()
    assert again.schema_version == len(pg_migrations.MIGRATIONS)
    await asyncio.gather(*(db.close() for db in [*dbs, again]))


async def test_a_database_newer_than_the_code_is_refused(postgres_url):
    db = await PgDatabase(postgres_url).open()
    async with db.connection() as conn:
        await conn.execute("INSERT INTO schema_migrations (number, name) VALUES (999, 'future')")
        with pytest.raises(RuntimeError, match="newer than this code knows"):
            await pg_migrations.migrate(conn)
    await db.close()
