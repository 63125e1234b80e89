"""The cost guard's memory: what each version was last seen doing, idle episodes and their
alert messages, snoozes, schedule actions done and summaries sent.

Everything the cost guard decides on lives here, so a restart neither forgets an alert nor
repeats one.
"""

from __future__ import annotations

from datetime import date, datetime

from bot.core.fleet.state import Episode, Snooze, Watch
from bot.state.db import Database

__all__ = ["CostGuardStore", "Episode", "Snooze", "Watch"]


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class CostGuardStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # --- what each version was last seen doing ----------------------------------------------
    def watch(self, version_arn: str) -> Watch | None:
        row = self._db.one("SELECT * FROM cost_watch WHERE version_arn = ?", (version_arn,))
        return _watch(row) if row else None

    def watches(self) -> list[Watch]:
        return [_watch(r) for r in self._db.query("SELECT * FROM cost_watch ORDER BY version_name")]

    def save_watch(
        self,
        version_arn: str,
        version_name: str,
        status: str,
        seen_at: datetime,
        *,
        units: int = 1,
        last_request_at: datetime | None = None,
        idle_since: datetime | None = None,
        metrics_until: datetime | None = None,
    ) -> None:
        """Record a sighting; request times only move forward, unknowns keep what was known."""
        self._db.execute(
            """
            INSERT INTO cost_watch (version_arn, version_name, status, units, last_request_at,
                                    idle_since, metrics_until, seen_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(version_arn) DO UPDATE SET
                version_name = excluded.version_name,
                status = excluded.status,
                units = excluded.units,
                last_request_at = CASE
                    WHEN excluded.last_request_at IS NULL THEN cost_watch.last_request_at
                    WHEN cost_watch.last_request_at IS NULL THEN excluded.last_request_at
                    ELSE MAX(cost_watch.last_request_at, excluded.last_request_at) END,
                idle_since = excluded.idle_since,
                metrics_until = COALESCE(excluded.metrics_until, cost_watch.metrics_until),
                seen_at = excluded.seen_at
            """,
            (
                version_arn,
                version_name,
                status,
                units,
                _iso(last_request_at),
                _iso(idle_since),
                _iso(metrics_until),
                seen_at.isoformat(),
            ),
        )

    def mark_stop_requested(self, version_arn: str, at: datetime | None, by: str | None) -> None:
        self._db.execute(
            "UPDATE cost_watch SET stop_requested_at = ?, stop_requested_by = ?"
            " WHERE version_arn = ?",
            (_iso(at), by, version_arn),
        )

    def mark_start_requested(self, version_arn: str, at: datetime | None) -> None:
        self._db.execute(
            "UPDATE cost_watch SET start_requested_at = ? WHERE version_arn = ?",
            (_iso(at), version_arn),
        )

    def mark_stop_failed(self, version_arn: str, at: datetime | None) -> None:
        self._db.execute(
            "UPDATE cost_watch SET stop_failed_at = ? WHERE version_arn = ?",
            (_iso(at), version_arn),
        )

    # --- idle episodes -------------------------------------------------------------------
    def open_episode(self, version_arn: str) -> Episode | None:
        row = self._db.one(
            "SELECT * FROM cost_episodes WHERE version_arn = ? AND state = 'open'", (version_arn,)
        )
        return _episode(row) if row else None

    def episode(self, episode_id: int) -> Episode | None:
        row = self._db.one("SELECT * FROM cost_episodes WHERE id = ?", (episode_id,))
        return _episode(row) if row else None

    def open_episodes(self) -> list[Episode]:
        rows = self._db.query("SELECT * FROM cost_episodes WHERE state = 'open' ORDER BY id")
        return [_episode(r) for r in rows]

    def episodes(self) -> list[Episode]:
        return [_episode(r) for r in self._db.query("SELECT * FROM cost_episodes ORDER BY id")]

    def create_episode(
        self,
        version_arn: str,
        version_name: str,
        idle_since: datetime,
        units: int,
        now: datetime,
        *,
        channel: str | None,
        ts: str | None,
        next_alert_at: datetime,
        gap_minutes: float,
        state: str = "open",
        outcome: str | None = None,
        outcome_by: str | None = None,
    ) -> Episode:
        cursor = self._db.execute(
            "INSERT INTO cost_episodes (version_arn, version_name, idle_since, units, opened_at,"
            " channel, ts, last_alert_at, next_alert_at, gap_minutes, state, outcome,"
            " outcome_by, outcome_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                version_arn,
                version_name,
                idle_since.isoformat(),
                units,
                now.isoformat(),
                channel,
                ts,
                now.isoformat(),
                next_alert_at.isoformat(),
                gap_minutes,
                state,
                outcome,
                outcome_by,
                now.isoformat() if state != "open" else None,
            ),
        )
        episode = self.episode(int(cursor.lastrowid or 0))
        assert episode is not None
        return episode

    def record_follow_up(
        self, episode_id: int, now: datetime, next_alert_at: datetime, gap_minutes: float
    ) -> None:
        self._db.execute(
            "UPDATE cost_episodes SET alerts = alerts + 1, last_alert_at = ?, next_alert_at = ?,"
            " gap_minutes = ? WHERE id = ?",
            (now.isoformat(), next_alert_at.isoformat(), gap_minutes, episode_id),
        )

    def set_message(self, episode_id: int, channel: str, ts: str) -> None:
        self._db.execute(
            "UPDATE cost_episodes SET channel = ?, ts = ? WHERE id = ?", (channel, ts, episode_id)
        )

    def set_note(self, episode_id: int, note: str | None) -> None:
        self._db.execute("UPDATE cost_episodes SET note = ? WHERE id = ?", (note, episode_id))

    def close_episode(
        self, episode_id: int, idle_end: datetime, outcome: str, by: str | None = None
    ) -> bool:
        """Close an open episode when its idle stretch ended (a request, a stop); False if it
        was already closed (a second press, a race)."""
        cursor = self._db.execute(
            "UPDATE cost_episodes SET state = 'closed', outcome = ?, outcome_by = ?,"
            " outcome_at = ? WHERE id = ? AND state = 'open'",
            (outcome, by, idle_end.isoformat(), episode_id),
        )
        return cursor.rowcount == 1

    # --- snoozes -------------------------------------------------------------------------
    def snooze(self, version_arn: str) -> Snooze | None:
        row = self._db.one("SELECT * FROM cost_snoozes WHERE version_arn = ?", (version_arn,))
        if row is None:
            return None
        return Snooze(
            version_arn=row["version_arn"],
            until=datetime.fromisoformat(row["until"]),
            by=row["by"],
            at=datetime.fromisoformat(row["at"]),
            episode_id=row["episode_id"],
            expired=bool(row["expired"]),
        )

    def set_snooze(
        self, version_arn: str, until: datetime, by: str, at: datetime, episode_id: int | None
    ) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO cost_snoozes (version_arn, until, by, at, episode_id, expired)"
            " VALUES (?, ?, ?, ?, ?, 0)",
            (version_arn, until.isoformat(), by, at.isoformat(), episode_id),
        )

    def mark_snooze_expired(self, version_arn: str) -> None:
        self._db.execute(
            "UPDATE cost_snoozes SET expired = 1 WHERE version_arn = ?", (version_arn,)
        )

    def clear_snooze(self, version_arn: str) -> None:
        self._db.execute("DELETE FROM cost_snoozes WHERE version_arn = ?", (version_arn,))

    # --- schedule actions and summaries --------------------------------------------------
    def schedule_done(self, key: str) -> bool:
        return self._db.one("SELECT 1 FROM cost_schedule_actions WHERE key = ?", (key,)) is not None

    def record_schedule(self, key: str, at: datetime, result: str) -> bool:
        """Claim a schedule action; False if it was already done."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO cost_schedule_actions (key, done_at, result) VALUES (?, ?, ?)",
            (key, at.isoformat(), result),
        )
        return cursor.rowcount == 1

    def note_started(self, at: datetime) -> datetime:
        """Remember when the bot first watched the fleet (kept from the first call on)."""
        self._db.execute(
            "INSERT OR IGNORE INTO fleet_facts (key, value) VALUES ('first_started', ?)",
            (at.isoformat(),),
        )
        started = self.first_started()
        assert started is not None
        return started

    def first_started(self) -> datetime | None:
        row = self._db.one("SELECT value FROM fleet_facts WHERE key = 'first_started'")
        return _dt(row["value"]) if row else None

    def summary_sent(self, day: date) -> bool:
        return (
            self._db.one("SELECT 1 FROM cost_summaries WHERE day = ?", (day.isoformat(),))
            is not None
        )

    def record_summary(
        self, day: date, at: datetime, channel: str | None = None, ts: str | None = None
    ) -> bool:
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO cost_summaries (day, sent_at, channel, ts) VALUES (?, ?, ?, ?)",
            (day.isoformat(), at.isoformat(), channel, ts),
        )
        return cursor.rowcount == 1


def _watch(row) -> Watch:
    return Watch(
        version_arn=row["version_arn"],
        version_name=row["version_name"],
        status=row["status"],
        units=row["units"],
        last_request_at=_dt(row["last_request_at"]),
        idle_since=_dt(row["idle_since"]),
        metrics_until=_dt(row["metrics_until"]),
        seen_at=datetime.fromisoformat(row["seen_at"]),
        stop_requested_at=_dt(row["stop_requested_at"]),
        stop_requested_by=row["stop_requested_by"],
        start_requested_at=_dt(row["start_requested_at"]),
        stop_failed_at=_dt(row["stop_failed_at"]),
    )


def _episode(row) -> Episode:
    return Episode(
        id=row["id"],
        version_arn=row["version_arn"],
        version_name=row["version_name"],
        idle_since=datetime.fromisoformat(row["idle_since"]),
        units=row["units"],
        opened_at=datetime.fromisoformat(row["opened_at"]),
        channel=row["channel"],
        ts=row["ts"],
        alerts=row["alerts"],
        last_alert_at=datetime.fromisoformat(row["last_alert_at"]),
        next_alert_at=datetime.fromisoformat(row["next_alert_at"]),
        gap_minutes=row["gap_minutes"],
        state=row["state"],
        outcome=row["outcome"],
        outcome_by=row["outcome_by"],
        outcome_at=_dt(row["outcome_at"]),
        note=row["note"],
    )
