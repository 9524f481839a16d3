"""The SQLite database of a history: opened with its settings, migrated, kept aside if damaged.

See :mod:`stagewise.models.storage.history` for the layout;
:mod:`stagewise.models.storage.history.schema` holds the migrations.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

from stagewise.models.errors import StagewiseError
from stagewise.models.storage.history.schema import (
    _MIGRATIONS,
    BUSY_TIMEOUT_S,
    DATABASE_NAME,
    SCHEMA_VERSION,
)


def _fold(text: str | None) -> str:
    """Case-folded text, for case-insensitive search (registered in SQLite)."""
    return (text or "").casefold()


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back the open transaction, if any, keeping the error that caused it."""
    if db.in_transaction:
        with suppress(sqlite3.Error):
            db.execute("ROLLBACK")


def _open_database(database: Path) -> sqlite3.Connection:
    """A connection to ``database`` in WAL mode, autocommit, with ``sw_fold`` registered."""
    db = sqlite3.connect(database, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                         check_same_thread=False)
    try:
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.create_function("sw_fold", 1, _fold, deterministic=True)
    except BaseException:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection) -> None:
    """Brings the schema up to :data:`SCHEMA_VERSION`, in one transaction.

    Raises:
        StagewiseError: The database was written by a newer version of Stagewise.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StagewiseError(
                f"the history was written by a newer version of Stagewise (schema "
                f"{version}, this version reads up to {SCHEMA_VERSION})")
        if version < SCHEMA_VERSION:
            while version < SCHEMA_VERSION:
                _MIGRATIONS[version](db)
                version += 1
            db.execute(f"PRAGMA user_version = {version:d}")
        db.execute("COMMIT")
    except BaseException:
        _rollback(db)
        raise


def _keep_damaged(database: Path) -> Path:
    """Move a damaged database (and its WAL files) aside, never deleting it.

    Returns:
        The database's new name, ``<name>.damaged-<UTC time>``.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    kept = database.with_name(f"{DATABASE_NAME}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = database.with_name(DATABASE_NAME + suffix)
        if source.exists():
            os.replace(source, kept.with_name(kept.name + suffix))
    return kept
