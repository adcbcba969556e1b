"""The node's queue and each series' state, in SQLite inside the workdir: a killed node resumes.

States: receiving -> queued -> processing -> sending -> sent, or failed (could not be measured),
not_sent (measured, but no SEG/SR to send), send_failed (every send attempt failed). A slice that
is new (not a repeat of one already received) re-opens a series whatever its state.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

ACTIVE = ("receiving", "queued", "processing")

SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY, study_uid TEXT, calling_ae TEXT, state TEXT NOT NULL,
    files INTEGER DEFAULT 0, first_received REAL, last_received REAL,
    attempts INTEGER DEFAULT 0, next_try REAL DEFAULT 0, message TEXT DEFAULT '',
    processed INTEGER DEFAULT 0, sent_at REAL, removed INTEGER DEFAULT 0
)"""


class NodeStore:
    def __init__(self, path: str | Path):
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, sql: str, args=()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def get(self, series_uid: str) -> dict | None:
        row = self._run("SELECT * FROM series WHERE series_uid=?", (series_uid,)).fetchone()
        return dict(row) if row else None

    def all(self) -> list[dict]:
        return [dict(r) for r in self._run("SELECT * FROM series ORDER BY first_received")]

    def active_count(self) -> int:
        marks = ",".join("?" * len(ACTIVE))
        return self._run(f"SELECT COUNT(*) FROM series WHERE state IN ({marks}) AND removed=0", ACTIVE).fetchone()[0]

    def file_received(self, series_uid: str, study_uid: str, calling_ae: str, new_file: bool, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT state FROM series WHERE series_uid=?", (series_uid,)).fetchone()
                if row is None:
                    self._db.execute("INSERT INTO series (series_uid, study_uid, calling_ae, state, files, first_received, "
                                     "last_received) VALUES (?,?,?,?,?,?,?)",
                                     (series_uid, study_uid, calling_ae, "receiving", int(new_file), now, now))
                elif new_file or row["state"] in ("receiving", "queued"):
                    # a new slice (re)opens the series; a repeat only keeps a still-open one open
                    self._db.execute("UPDATE series SET state='receiving', files=files+?, last_received=?, calling_ae=?, "
                                     "attempts=0, next_try=0, removed=0 WHERE series_uid=?",
                                     (int(new_file), now, calling_ae, series_uid))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def resume(self) -> list[str]:
        """After a restart: a series whose processing was cut off is queued again."""
        uids = [r[0] for r in self._run("SELECT series_uid FROM series WHERE state='processing'")]
        self._run("UPDATE series SET state='queued' WHERE state='processing'")
        return uids

    def promote_quiet(self, quiet_seconds: float, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        uids = [r[0] for r in self._run("SELECT series_uid FROM series WHERE state='receiving' AND last_received<=?",
                                        (now - quiet_seconds,))]
        for uid in uids:
            self._run("UPDATE series SET state='queued' WHERE series_uid=? AND state='receiving' AND last_received<=?",
                      (uid, now - quiet_seconds))
        return uids

    def take_queued(self) -> dict | None:
        """The oldest queued series, now marked processing (one at a time)."""
        with self._lock:
            row = self._db.execute("SELECT * FROM series WHERE state='queued' ORDER BY last_received LIMIT 1").fetchone()
            if row is None:
                return None
            self._db.execute("UPDATE series SET state='processing' WHERE series_uid=?", (row["series_uid"],))
            return dict(row)

    def finish(self, series_uid: str, state: str, message: str = "", processed: bool = False) -> bool:
        """Leave 'processing' for `state`; False when new slices re-opened the series meanwhile."""
        cursor = self._run("UPDATE series SET state=?, message=?, processed=processed+?, attempts=0, next_try=0 "
                           "WHERE series_uid=? AND state='processing'", (state, message, int(processed), series_uid))
        return cursor.rowcount == 1

    def requeue(self, series_uid: str) -> None:
        self._run("UPDATE series SET state='queued' WHERE series_uid=? AND state='processing'", (series_uid,))

    def due_sends(self, now: float | None = None) -> list[dict]:
        now = time.time() if now is None else now
        return [dict(r) for r in self._run("SELECT * FROM series WHERE state='sending' AND next_try<=? ORDER BY next_try",
                                           (now,))]

    def sent(self, series_uid: str, now: float | None = None) -> None:
        self._run("UPDATE series SET state='sent', message='', sent_at=? WHERE series_uid=? AND state='sending'",
                  (time.time() if now is None else now, series_uid))

    def send_failed(self, series_uid: str, message: str, next_try: float | None) -> None:
        """Retry at next_try, or give up (next_try None)."""
        if next_try is None:
            self._run("UPDATE series SET state='send_failed', attempts=attempts+1, message=? WHERE series_uid=? "
                      "AND state='sending'", (message, series_uid))
        else:
            self._run("UPDATE series SET attempts=attempts+1, next_try=?, message=? WHERE series_uid=? AND state='sending'",
                      (next_try, message, series_uid))

    def removable(self, keep_hours: float, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        return [r[0] for r in self._run("SELECT series_uid FROM series WHERE state='sent' AND removed=0 AND sent_at<=?",
                                        (now - keep_hours * 3600,))]

    def mark_removed(self, series_uid: str) -> None:
        self._run("UPDATE series SET removed=1 WHERE series_uid=? AND state='sent'", (series_uid,))

    def retry_given_up(self) -> int:
        return self._run("UPDATE series SET state='sending', attempts=0, next_try=0 WHERE state='send_failed'").rowcount
