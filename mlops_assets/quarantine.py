"""The quarantine: landing files refused, with the reason, in SQLite (never in the DuckDB warehouse).

The landing sensor writes here while runs hold the warehouse's single write lock, so the quarantine
lives in its own small SQLite file. Files themselves are never moved, modified or deleted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine (
    file_name TEXT NOT NULL,
    path TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    run_id TEXT NOT NULL DEFAULT '',
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (path, content_sha256, source, run_id)
)
"""


@dataclass(frozen=True)
class QuarantineEntry:
    """One refused landing file: which file, which content, why, and who found it."""

    file_name: str
    path: str
    content_sha256: str
    reason: str
    source: str
    run_id: str
    recorded_at: str


@contextmanager
def _connect(db_path: Path) -> Iterator[sqlite3.Connection]:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(db_path, timeout=30)
    try:
        con.execute(_SCHEMA)
        yield con
        con.commit()
    finally:
        con.close()


def record(
    db_path: Path, path: Path, content_sha256: str, reason: str, source: str = "landing_sensor", run_id: str = ""
) -> bool:
    """Record a refused file; returns False when this file content was already recorded by this source."""
    with _connect(db_path) as con:
        cursor = con.execute(
            "INSERT OR IGNORE INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                path.name,
                str(path),
                content_sha256,
                reason,
                source,
                run_id,
                datetime.now(timezone.utc).isoformat(timespec="seconds"),
            ],
        )
        return cursor.rowcount == 1


def list_entries(db_path: Path | str) -> list[QuarantineEntry]:
    """Every quarantine entry, oldest first."""
    db_path = Path(db_path)
    if not db_path.exists():
        return []
    with _connect(db_path) as con:
        rows = con.execute(
            "SELECT file_name, path, content_sha256, reason, source, run_id, recorded_at "
            "FROM quarantine ORDER BY recorded_at, file_name"
        ).fetchall()
    return [QuarantineEntry(*row) for row in rows]


def is_quarantined(db_path: Path, path: Path, content_sha256: str) -> bool:
    """Whether this exact content of this file is already quarantined."""
    if not db_path.exists():
        return False
    with _connect(db_path) as con:
        row = con.execute(
            "SELECT 1 FROM quarantine WHERE path = ? AND content_sha256 = ? LIMIT 1", [str(path), content_sha256]
        ).fetchone()
    return row is not None


def recorded_run_ids(db_path: Path) -> set[str]:
    """The run ids whose failures are already recorded."""
    if not db_path.exists():
        return set()
    with _connect(db_path) as con:
        return {row[0] for row in con.execute("SELECT DISTINCT run_id FROM quarantine WHERE run_id != ''")}
