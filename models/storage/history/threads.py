"""Threads in the history database: the questions asked about one open image, one after
another (schema 3; older databases read as runs that are each their own thread)."""

from __future__ import annotations

import sqlite3

__all__ = ["has_threads", "thread_columns", "thread_root"]


def thread_columns(db: sqlite3.Connection) -> str:
    """The thread columns to select: a database too old to have them (one opened
    read-only, which cannot be migrated) reads as runs that are each their own thread."""
    if has_threads(db):
        return "runs.thread AS thread, runs.follow_up AS follow_up"
    return "NULL AS thread, 0 AS follow_up"


def has_threads(db: sqlite3.Connection) -> bool:
    """Whether the database has the thread columns (schema 3 and later)."""
    return any(row[1] == "thread" for row in db.execute("PRAGMA table_info(runs)"))


def thread_root(db: sqlite3.Connection, run_id: int) -> int:
    """The first run of ``run_id``'s thread (``run_id`` itself when it is gone)."""
    row = db.execute("SELECT coalesce(thread, id) FROM runs WHERE id = ?",
                     (run_id,)).fetchone()
    return int(row[0]) if row is not None else run_id
