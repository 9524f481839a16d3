"""Compared pairs and further images in the history database (schema 5; older databases,
opened read-only and so not migrated, read as runs compared with none, of one image)."""

from __future__ import annotations

import sqlite3

__all__ = ["extra_images", "has_pairs", "link_pair", "pair_column"]


def has_pairs(db: sqlite3.Connection) -> bool:
    """Whether the database has ``runs.compared_with`` and ``run_images`` (schema 5)."""
    return any(row[1] == "compared_with" for row in db.execute("PRAGMA table_info(runs)"))


def pair_column(db: sqlite3.Connection) -> str:
    """The compared-with column to select (NULL in an older database)."""
    return "runs.compared_with AS compared_with" if has_pairs(db) else "NULL AS compared_with"


def link_pair(db: sqlite3.Connection, first: int, second: int) -> None:
    """Make each of two runs name the other as the run it is compared with."""
    db.execute("UPDATE runs SET compared_with = ? WHERE id = ?", (second, first))
    db.execute("UPDATE runs SET compared_with = ? WHERE id = ?", (first, second))


def extra_images(db: sqlite3.Connection, run_id: int) -> list[sqlite3.Row]:
    """A run's images after the first, in order: rows of (image, image_name, ext)."""
    if not has_pairs(db):
        return []
    return db.execute("SELECT run_images.image AS image, run_images.image_name AS image_name, "
                      "images.ext AS ext FROM run_images JOIN images ON images.sha256 = "
                      "run_images.image WHERE run = ? ORDER BY position", (run_id,)).fetchall()
