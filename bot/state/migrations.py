"""The schema's history: numbered migrations, applied in order, recorded in `PRAGMA user_version`.

A migration is never edited once it has shipped: a change to the schema is a new migration at
the end of the list, so any `cxr.db` ever written upgrades in place, in one transaction per step.
Migration 1 adopts the schema as the first version created it (every statement is
`IF NOT EXISTS`), so a database made before migrations existed upgrades without losing a row.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    apply: str | Callable[[sqlite3.Connection], None]


ADOPT_FIRST_SCHEMA = """
-- uploads
CREATE TABLE IF NOT EXISTS uploads (
    channel     TEXT NOT NULL,
    ts          TEXT NOT NULL,
    thread_ts   TEXT NOT NULL,
    user        TEXT NOT NULL,
    files       TEXT NOT NULL,          -- JSON list of file refs (ids, names, URLs)
    state       TEXT NOT NULL DEFAULT 'pending',   -- pending | answered
    received_at TEXT NOT NULL,
    answered_at TEXT,
    PRIMARY KEY (channel, ts)
);
CREATE INDEX IF NOT EXISTS uploads_pending ON uploads(state) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS classifications (
    channel       TEXT NOT NULL,
    ts            TEXT NOT NULL,
    file_id       TEXT NOT NULL,
    outcome       TEXT NOT NULL,        -- Normal | Pneumonia | Uncertain | an error code
    model_kind    TEXT,                 -- rekognition | local, when a model answered
    model_version TEXT,
    at            TEXT NOT NULL,
    PRIMARY KEY (channel, ts, file_id)
);
CREATE INDEX IF NOT EXISTS classifications_at ON classifications(model_kind, at);
-- operations
CREATE TABLE IF NOT EXISTS lifecycle_operations (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL,            -- train | start | stop
    version_name TEXT NOT NULL,
    version_arn  TEXT,                     -- unknown until CreateProjectVersion answers
    channel      TEXT NOT NULL,            -- where the outcome is posted
    user         TEXT NOT NULL,            -- who asked (Slack user ID, or cost-guard…)
    started_at   TEXT NOT NULL,
    status       TEXT NOT NULL,            -- the last status seen (AWS's, or "requested")
    phase        TEXT NOT NULL,            -- where the bot is in the operation
    data         TEXT NOT NULL DEFAULT '{}',
    finished_at  TEXT,
    result       TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS lifecycle_ops_open_version
    ON lifecycle_operations(version_name) WHERE finished_at IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS lifecycle_ops_open_train
    ON lifecycle_operations(kind) WHERE finished_at IS NULL AND kind = 'train';
-- runs
CREATE TABLE IF NOT EXISTS model_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    version_arn TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    stopped_at  TEXT,
    units       INTEGER NOT NULL DEFAULT 1,
    source      TEXT NOT NULL            -- bot | observed | schedule
);
CREATE UNIQUE INDEX IF NOT EXISTS model_runs_open ON model_runs(version_arn) WHERE stopped_at IS NULL;
-- audit
CREATE TABLE IF NOT EXISTS audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,     -- a Slack user ID, or "cost-guard", "schedule", "watcher"
    action  TEXT NOT NULL,     -- start | stop | train | snooze | refused:start | …
    target  TEXT NOT NULL,     -- usually a model version name
    result  TEXT NOT NULL      -- requested | ok | failed: … | refused: …
);
-- cost_guard
CREATE TABLE IF NOT EXISTS cost_watch (
    version_arn       TEXT PRIMARY KEY,
    version_name      TEXT NOT NULL,
    status            TEXT NOT NULL,
    units             INTEGER NOT NULL DEFAULT 1,
    last_request_at   TEXT,            -- latest request seen from any source
    idle_since        TEXT,            -- max(last request, run start) while RUNNING
    metrics_until     TEXT,            -- CloudWatch has been read up to here
    seen_at           TEXT NOT NULL,
    stop_requested_at TEXT,            -- the guard asked for a stop (until seen stopped)
    stop_requested_by TEXT,
    start_requested_at TEXT,           -- the schedule asked for a start (until seen running)
    stop_failed_at    TEXT             -- last failed auto-stop (reported once per episode)
);
CREATE TABLE IF NOT EXISTS cost_episodes (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    version_arn   TEXT NOT NULL,
    version_name  TEXT NOT NULL,
    idle_since    TEXT NOT NULL,
    units         INTEGER NOT NULL,
    opened_at     TEXT NOT NULL,
    channel       TEXT,                -- the alert (thread root); NULL when nowhere to post
    ts            TEXT,
    alerts        INTEGER NOT NULL DEFAULT 1,
    last_alert_at TEXT NOT NULL,
    next_alert_at TEXT NOT NULL,
    gap_minutes   REAL NOT NULL,
    state         TEXT NOT NULL DEFAULT 'open',   -- open | closed
    outcome       TEXT,                -- resumed | stopped | auto-stopped | stopped-elsewhere | gone
    outcome_by    TEXT,
    outcome_at    TEXT,                -- when the idle stretch ended
    note          TEXT                 -- the last button press, shown on the alert
);
CREATE UNIQUE INDEX IF NOT EXISTS cost_episodes_open
    ON cost_episodes(version_arn) WHERE state = 'open';
CREATE TABLE IF NOT EXISTS cost_snoozes (
    version_arn TEXT PRIMARY KEY,
    until       TEXT NOT NULL,
    by          TEXT NOT NULL,
    at          TEXT NOT NULL,
    episode_id  INTEGER,
    expired     INTEGER NOT NULL DEFAULT 0       -- the expiry has been acted on
);
CREATE TABLE IF NOT EXISTS cost_schedule_actions (
    key     TEXT PRIMARY KEY,     -- e.g. start@2026-01-05T07:45:00+00:00
    done_at TEXT NOT NULL,
    result  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cost_summaries (
    day     TEXT PRIMARY KEY,     -- the local day summarised
    sent_at TEXT NOT NULL,
    channel TEXT,
    ts      TEXT
);
"""

LEASES_AND_DIRECT_UPLOADS = """
-- leases: which instance may work on something until when (uploads, operations, a leader)
CREATE TABLE leases (
    key         TEXT PRIMARY KEY,     -- upload:<channel>:<ts>, leader:<job>, …
    owner       TEXT NOT NULL,        -- the instance holding it
    expires_at  REAL NOT NULL,        -- Unix seconds
    acquired_at REAL NOT NULL,
    renewed_at  REAL NOT NULL
);
CREATE INDEX leases_expiry ON leases(expires_at);
-- a DM is answered for every file; a channel only for images (decided after files.info)
ALTER TABLE uploads ADD COLUMN direct INTEGER NOT NULL DEFAULT 0;
"""

FLEET_FACTS = """
-- Facts about the fleet's own history; 'first_started': when the bot first watched the fleet
-- (a database from before this migration: its earliest record), so that no daily summary is
-- written for a day the bot did not see.
CREATE TABLE fleet_facts (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO fleet_facts (key, value)
SELECT 'first_started', MIN(at) FROM (
    SELECT MIN(at) AS at FROM audit_log
    UNION ALL SELECT MIN(started_at) FROM model_runs
    UNION ALL SELECT MIN(started_at) FROM lifecycle_operations
    UNION ALL SELECT MIN(seen_at) FROM cost_watch
    UNION ALL SELECT MIN(received_at) FROM uploads
) WHERE at IS NOT NULL HAVING MIN(at) IS NOT NULL;
"""

LEADER_TERMS = """
-- leader_terms: which replica leads (polls AWS, alerts, stops), until when, in which epoch
CREATE TABLE leader_terms (
    name        TEXT PRIMARY KEY,      -- what is led, e.g. fleet
    owner       TEXT NOT NULL,         -- the replica holding it ('' before the first claim)
    epoch       INTEGER NOT NULL,      -- one more per new term: fences a stale leader
    expires_at  REAL NOT NULL,         -- Unix seconds
    acquired_at REAL NOT NULL
);
-- leader_actions: what a leader has done (recorded before doing it), never done twice
CREATE TABLE leader_actions (
    key   TEXT PRIMARY KEY,            -- e.g. alert:<episode>:<n>, stop:<version>:<run>
    name  TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    owner TEXT NOT NULL,
    at    REAL NOT NULL
);
"""

LEARNING_LOOP = """
-- every review ever given (the audit trail); the latest per image is the one that counts
CREATE TABLE reviews (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    channel  TEXT NOT NULL,
    ts       TEXT NOT NULL,             -- the posted message
    file_id  TEXT NOT NULL,             -- the Slack file: enough to fetch the image again
    reviewer TEXT NOT NULL,             -- Slack user ID
    label    TEXT NOT NULL,             -- Normal | Pneumonia | Not assessable
    at       TEXT NOT NULL
);
CREATE INDEX reviews_case ON reviews(channel, ts, file_id, at);
-- each model's own answer per image (two rows when both models classified it)
CREATE TABLE model_answers (
    channel       TEXT NOT NULL,
    ts            TEXT NOT NULL,
    file_id       TEXT NOT NULL,
    model_kind    TEXT NOT NULL,
    model_version TEXT NOT NULL,
    label         TEXT NOT NULL,        -- the model's top label
    uncertain     INTEGER NOT NULL DEFAULT 0,   -- the verdict shown read "Uncertain"
    at            TEXT NOT NULL,
    PRIMARY KEY (channel, ts, file_id, model_kind, model_version)
);
CREATE INDEX model_answers_at ON model_answers(at);
INSERT OR IGNORE INTO model_answers
    SELECT channel, ts, file_id, model_kind, model_version, outcome, 0, at
    FROM classifications
    WHERE outcome IN ('Normal', 'Pneumonia') AND model_kind IS NOT NULL
      AND model_version IS NOT NULL;
-- which Rekognition version serves: set by /cxr promote, wins over CXR_PROJECT_VERSION_ARN
CREATE TABLE serving (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    version_arn TEXT NOT NULL,
    since       TEXT NOT NULL,
    by          TEXT NOT NULL
);
-- images exported for training: never counted in a figure read as held out
CREATE TABLE training_exports (
    channel     TEXT NOT NULL,
    ts          TEXT NOT NULL,
    file_id     TEXT NOT NULL,
    destination TEXT NOT NULL,
    at          TEXT NOT NULL,
    PRIMARY KEY (channel, ts, file_id, destination)
);
-- blue/green promotions: open until the candidate serves (or the promotion fails)
CREATE TABLE promotions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    candidate_arn TEXT NOT NULL,
    previous_arn  TEXT,
    channel       TEXT NOT NULL,
    user          TEXT NOT NULL,
    units         INTEGER NOT NULL DEFAULT 1,
    state         TEXT NOT NULL,        -- starting | serving | failed
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    note          TEXT
);
CREATE UNIQUE INDEX promotions_open ON promotions(state) WHERE state = 'starting';
"""


def forget_file_names(conn: sqlite3.Connection) -> None:
    """Uploads keep their files' IDs, types and sizes, no longer their names or URLs (which end
    with the name): a name can carry a patient's. A resumed upload asks Slack for both."""
    conn.execute("PRAGMA secure_delete = ON")  # the old values are overwritten, not freed
    rows = conn.execute("SELECT channel, ts, files FROM uploads").fetchall()
    for channel, ts, files in rows:
        kept = [
            {
                "file_id": f.get("file_id", ""),
                "name": "",
                "mimetype": f.get("mimetype", ""),
                "size": f.get("size", 0),
            }
            for f in json.loads(files or "[]")
        ]
        conn.execute(
            "UPDATE uploads SET files = ? WHERE channel = ? AND ts = ?",
            (json.dumps(kept), channel, ts),
        )


MIGRATIONS: list[Migration] = [
    Migration(1, "adopt the first schema as found", ADOPT_FIRST_SCHEMA),
    Migration(2, "leases; uploads remember whether they came in a DM", LEASES_AND_DIRECT_UPLOADS),
    Migration(3, "fleet facts: when the bot first watched the fleet", FLEET_FACTS),
    Migration(4, "leader terms and the actions leaders took", LEADER_TERMS),
    Migration(5, "reviews, model answers, the served version, exports, promotions", LEARNING_LOOP),
    Migration(6, "uploads forget their files' names and URLs", forget_file_names),
]


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, migrations: list[Migration] | None = None) -> int:
    """Apply every migration newer than the database, each in its own transaction."""
    steps = MIGRATIONS if migrations is None else migrations
    numbers = [m.number for m in steps]
    if numbers != list(range(1, len(steps) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n in order, got {numbers}")
    current = schema_version(conn)
    if current > len(steps):
        raise RuntimeError(
            f"this database is at schema {current}, newer than this code knows ({len(steps)}):"
            " run the newer release, or restore a backup"
        )
    for step in steps[current:]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if isinstance(step.apply, str):
                for statement in _statements(step.apply):
                    conn.execute(statement)
            else:
                step.apply(conn)
            conn.execute(f"PRAGMA user_version = {step.number}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return schema_version(conn)


def _statements(script: str) -> list[str]:
    """Split a script into statements (executescript would commit our transaction)."""
    statements, buffer = [], ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if _has_sql(buffer):
                statements.append(buffer.strip())
            buffer = ""
    if _has_sql(buffer.removesuffix(";")):
        raise ValueError(f"incomplete SQL statement in migration: {buffer.strip()[:60]}")
    return statements


def _has_sql(text: str) -> bool:
    return any(
        line.strip() and not line.strip().startswith("--") and line.strip() != ";"
        for line in text.splitlines()
    )
