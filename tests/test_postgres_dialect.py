"""The stores' SQLite idioms, as PostgreSQL hears them."""

from __future__ import annotations

import pytest

from bot.state.postgres.dialect import SchemaFacts, Translated, translate

FACTS = SchemaFacts(
    {"classifications": ("channel", "ts", "file_id"), "uploads": ("channel", "ts")},
    frozenset({"audit_log"}),
)


@pytest.mark.parametrize(
    ("sqlite", "postgres"),
    [
        ("BEGIN IMMEDIATE", "BEGIN"),  # … and the writer lock: see the next test
        (
            "SELECT state, user FROM uploads WHERE ts = ? AND note = 'user? 100%'",
            "SELECT state, \"user\" FROM uploads WHERE ts = %s AND note = 'user? 100%%'",
        ),
        ("SELECT u.user, user_id FROM x", 'SELECT u."user", user_id FROM x'),
        (
            "INSERT OR IGNORE INTO uploads (channel, ts) VALUES (?, ?)",
            "INSERT INTO uploads (channel, ts) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        ),
        (
            "INSERT OR REPLACE INTO classifications (channel, ts, file_id, outcome)"
            " VALUES (?, ?, ?, ?)",
            "INSERT INTO classifications (channel, ts, file_id, outcome) VALUES (%s, %s, %s, %s)"
            ' ON CONFLICT (channel, ts, file_id) DO UPDATE SET "outcome" = EXCLUDED."outcome"',
        ),
        (
            "SELECT MAX(at), MAX(a, MIN(b, c)) FROM t",
            "SELECT MAX(at), GREATEST(a, LEAST(b, c)) FROM t",
        ),
    ],
)
def test_translation(sqlite, postgres):
    assert translate(sqlite, FACTS).sql == postgres


def test_inserts_into_identity_tables_return_the_new_id():
    assert translate("INSERT INTO audit_log (at) VALUES (?)", FACTS) == Translated(
        "INSERT INTO audit_log (at) VALUES (%s) RETURNING id", True
    )
    assert not translate("INSERT INTO uploads (ts) VALUES (?)", FACTS).returns_id


def test_replace_into_a_table_without_a_primary_key_is_refused():
    with pytest.raises(ValueError, match="no primary key"):
        translate("INSERT OR REPLACE INTO nothing (a) VALUES (?)", FACTS)


def test_begin_immediate_takes_the_writer_lock_and_deferred_does_not():
    assert translate("BEGIN IMMEDIATE", FACTS).writer_lock
    assert not translate("BEGIN", FACTS).writer_lock
