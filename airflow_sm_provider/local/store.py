"""SQLite persistence of the local engine.

Records are plain JSON documents keyed by (kind, name). Names compare case-insensitively,
as SageMaker compares experiment, trial and trial-component names (job names are unique
case-insensitively as well). Timestamps inside records are epoch seconds (floats), which is
also how JSON 1.1 responses carry them, so a record can be returned without conversion.

All access goes through one connection guarded by one lock: the engine's request handlers
and job runner threads share it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Record = dict[str, Any]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL,
    name_key TEXT NOT NULL,
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    UNIQUE (kind, name_key)
);
CREATE TABLE IF NOT EXISTS metrics (
    resource TEXT NOT NULL,
    metric TEXT NOT NULL,
    step INTEGER,
    timestamp REAL NOT NULL,
    value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_by_resource ON metrics (resource, metric, step);
"""


class AlreadyExists(Exception):
    """Raised when inserting a record whose (kind, name) is taken."""


class Store:
    """Records and metric points of the engine, in one SQLite file (or in memory)."""

    def __init__(self, path: Path | str = ":memory:") -> None:
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- records ---------------------------------------------------------------------------
    def insert(self, kind: str, name: str, record: Record) -> None:
        """Create a record; raise AlreadyExists if the name is taken (case-insensitively)."""
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT INTO resources (kind, name_key, body) VALUES (?, ?, ?)",
                    (kind, name.lower(), json.dumps(record)),
                )
            except sqlite3.IntegrityError as err:
                raise AlreadyExists(f"{kind} {name}") from err

    def get(self, kind: str, name: str) -> Record | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT body FROM resources WHERE kind = ? AND name_key = ?", (kind, name.lower())
            ).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, kind: str, name: str, record: Record) -> None:
        """Replace an existing record (or create it)."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO resources (kind, name_key, body) VALUES (?, ?, ?) "
                "ON CONFLICT (kind, name_key) DO UPDATE SET body = excluded.body",
                (kind, name.lower(), json.dumps(record)),
            )

    def update(self, kind: str, name: str, change: Callable[[Record], Record | None]) -> Record:
        """Read-modify-write one record atomically; ``change`` may mutate in place.

        Raises KeyError if the record does not exist.
        """
        with self._lock:
            record = self.get(kind, name)
            if record is None:
                raise KeyError(f"{kind} {name}")
            new = change(record)
            record = record if new is None else new
            self.put(kind, name, record)
            return record

    def delete(self, kind: str, name: str) -> bool:
        with self._lock:
            cur = self._conn.execute(
                "DELETE FROM resources WHERE kind = ? AND name_key = ?", (kind, name.lower())
            )
        return cur.rowcount > 0

    def list(self, kind: str) -> list[Record]:
        """All records of a kind, oldest first."""
        return list(self.iter(kind))

    def iter(self, kind: str) -> Iterator[Record]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT body FROM resources WHERE kind = ? ORDER BY seq", (kind,)
            ).fetchall()
        for (body,) in rows:
            yield json.loads(body)

    # -- metric points ---------------------------------------------------------------------
    def add_metrics(self, resource: str, points: list[tuple[str, int | None, float, float]]) -> None:
        """Append (metric, step, timestamp, value) points of one resource (an ARN)."""
        with self._lock:
            self._conn.executemany(
                "INSERT INTO metrics (resource, metric, step, timestamp, value) VALUES (?, ?, ?, ?, ?)",
                [(resource, m, s, t, v) for m, s, t, v in points],
            )

    def delete_metrics(self, resource: str) -> None:
        """Forget every point of a resource (its record was deleted; a new one starts empty)."""
        with self._lock:
            self._conn.execute("DELETE FROM metrics WHERE resource = ?", (resource,))

    def metric_points(self, resource: str, metric: str) -> list[tuple[int | None, float, float]]:
        """(step, timestamp, value) points of one metric, in insertion order."""
        with self._lock:
            return self._conn.execute(
                "SELECT step, timestamp, value FROM metrics WHERE resource = ? AND metric = ? ORDER BY rowid",
                (resource, metric),
            ).fetchall()

    def metric_names(self, resource: str) -> list[str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT DISTINCT metric FROM metrics WHERE resource = ? ORDER BY metric", (resource,)
            ).fetchall()
        return [r[0] for r in rows]
