"""SQLite's SQL as the stores write it, said in PostgreSQL's dialect.

The stores were written for SQLite and use a handful of its idioms; rather than keep two copies
of every statement, each is translated once (and cached): `?` placeholders, the `user` column
(reserved in PostgreSQL), `INSERT OR IGNORE`, `INSERT OR REPLACE` (an upsert on the table's
primary key), `BEGIN IMMEDIATE` (SQLite's one writer at a time: a transaction-scoped advisory
lock, so a store's read-decide-write stays atomic across replicas), scalar `MAX(a, b)`/`MIN(a, b)` (`GREATEST`/`LEAST`, which skip NULLs where
SQLite returns NULL: the stores guard NULLs first), `BEGIN IMMEDIATE`, and `lastrowid` (an
`INSERT … RETURNING id`). Anything else a
store writes must already be common SQL; the PostgreSQL store tests run the stores to prove it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_STRING = re.compile(r"('(?:[^']|'')*')")
_INSERT = re.compile(
    r"^\s*INSERT\s+OR\s+(IGNORE|REPLACE)\s+INTO\s+(\w+)\s*\(([^)]*)\)", re.IGNORECASE | re.DOTALL
)
_PLAIN_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)", re.IGNORECASE)


@dataclass(frozen=True)
class Translated:
    sql: str
    returns_id: bool  # RETURNING id was added: the cursor's lastrowid comes from it
    writer_lock: bool = False  # BEGIN IMMEDIATE: take the one writer lock, as SQLite does


@dataclass(frozen=True)
class SchemaFacts:
    """What translation needs to know of the schema: primary keys, and which tables have an
    identity `id` (read from the database once it is migrated)."""

    primary_keys: dict[str, tuple[str, ...]]
    identity_tables: frozenset[str]


def translate(sql: str, facts: SchemaFacts) -> Translated:
    return _translate(sql, facts.identity_tables, tuple(sorted(facts.primary_keys.items())))


@lru_cache(maxsize=512)
def _translate(
    sql: str, identity_tables: frozenset[str], primary_keys: tuple[tuple[str, tuple[str, ...]], ...]
) -> Translated:
    if re.fullmatch(r"\s*BEGIN\s+(IMMEDIATE|EXCLUSIVE)\s*;?\s*", sql, re.IGNORECASE):
        return Translated("BEGIN", False, writer_lock=True)
    if re.fullmatch(r"\s*BEGIN(\s+DEFERRED)?\s*;?\s*", sql, re.IGNORECASE):
        return Translated("BEGIN", False)
    parts = _STRING.split(sql.replace("%", "%%"))  # odd indexes: string literals, left alone
    for i in range(0, len(parts), 2):
        code = parts[i].replace("?", "%s")
        parts[i] = _scalar_min_max(re.sub(r'(?<!["\w])user\b', '"user"', code))
    out = "".join(parts).rstrip().rstrip(";")
    suffix = ""
    insert = _INSERT.match(out)
    if insert:
        mode, table, columns = insert.group(1).upper(), insert.group(2), insert.group(3)
        out = re.sub(r"^\s*INSERT\s+OR\s+\w+\s+INTO", "INSERT INTO", out, count=1, flags=re.I)
        if mode == "IGNORE":
            suffix = " ON CONFLICT DO NOTHING"
        else:
            keys = dict(primary_keys).get(table)
            if not keys:
                raise ValueError(f"INSERT OR REPLACE into {table}, which has no primary key")
            names = [c.strip().strip('"') for c in columns.split(",")]
            updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in names if c not in keys)
            action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
            suffix = f" ON CONFLICT ({', '.join(keys)}) {action}"
    plain = _PLAIN_INSERT.match(out)
    returns_id = bool(
        plain and plain.group(1) in identity_tables and "RETURNING" not in out.upper()
    )
    if returns_id:
        suffix += " RETURNING id"
    return Translated(out + suffix, returns_id)


def _scalar_min_max(code: str) -> str:
    """MAX(a, b) → GREATEST(a, b) and MIN(a, b) → LEAST(a, b); aggregates (one argument) stay."""
    out, i = [], 0
    for match in re.finditer(r"\b(MAX|MIN)\s*\(", code, re.IGNORECASE):
        if match.start() < i:
            continue
        depth, j, comma = 1, match.end(), False
        while j < len(code) and depth:
            depth += {"(": 1, ")": -1}.get(code[j], 0)
            comma |= depth == 1 and code[j] == ","
            j += 1
        if comma:
            name = "GREATEST" if match.group(1).upper() == "MAX" else "LEAST"
            inner = _scalar_min_max(code[match.end() : j - 1])
            out.append(code[i : match.start()] + f"{name}({inner})")
            i = j
    return "".join(out) + code[i:]
