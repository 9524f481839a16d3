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
from stagewise.models.stages import STAGES, parse_answer
from stagewise.models.storage.history.owners import owner_alive
from stagewise.models.storage.history.schema import (
    _MIGRATIONS,
    BUSY_TIMEOUT_S,
    DATABASE_NAME,
    SCHEMA_VERSION,
)


def _fold(text: str | None) -> str:
    """Case-folded text, for case-insensitive search (registered in SQLite)."""
    return (text or "").casefold()


def _stage_words(answer: str | None) -> str:
    """An answer's four stage texts, case-folded, without their tags (registered in SQLite:
    a search for "summary" finds the word, not every answer's tag)."""
    stages = parse_answer(answer or "").stages
    return "\n".join(stages[stage] for stage in STAGES).casefold()


def _register_functions(db: sqlite3.Connection) -> None:
    """The functions the history's queries call: ``sw_fold`` and ``sw_stage_words``."""
    db.create_function("sw_fold", 1, _fold, deterministic=True)
    db.create_function("sw_stage_words", 1, _stage_words, deterministic=True)


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back the open transaction, if any, keeping the error that caused it."""
    if db.in_transaction:
        with suppress(sqlite3.Error):
            db.execute("ROLLBACK")


def _keep_private(database: Path) -> None:
    """Make the database readable by its owner only, as the stored images are (0600):
    created so when new (SQLite gives its WAL files the database's mode), narrowed when
    an older version left it readable by others. A file that cannot be changed is left
    as it is (the opening then says what is wrong)."""
    with suppress(OSError):  # FileExistsError included
        os.close(os.open(database, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    for path in (database, database.with_name(database.name + "-wal"),
                 database.with_name(database.name + "-shm")):
        with suppress(OSError):
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)


def _open_database(database: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection to ``database`` in WAL mode, autocommit, with ``sw_fold`` registered.

    Args:
        database: The database file.
        read_only: Open it read-only (``mode=ro``; ``immutable=1`` when even the WAL index
            cannot be made, as in a read-only folder after a clean exit); nothing is created.
    """
    if read_only:
        return _open_read_only(database)
    _keep_private(database)
    db = sqlite3.connect(database, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                         check_same_thread=False)
    try:
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        _register_functions(db)
    except BaseException:
        db.close()
        raise
    return db


def _open_read_only(database: Path) -> sqlite3.Connection:
    """A read-only connection to ``database`` (see :func:`_open_database`)."""
    uri = database.resolve().as_uri()
    for mode in ("mode=ro", "immutable=1"):
        db = sqlite3.connect(f"{uri}?{mode}", uri=True, timeout=BUSY_TIMEOUT_S,
                             isolation_level=None, check_same_thread=False)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error:
            db.close()
            if mode == "immutable=1":
                raise
            continue
        db.row_factory = sqlite3.Row
        _register_functions(db)
        return db
    raise AssertionError("unreachable")


def _check_integrity(db: sqlite3.Connection) -> None:
    """Run ``PRAGMA quick_check`` (every page, row and index entry is readable and in order).

    Raises:
        sqlite3.DatabaseError: With the SQLITE_CORRUPT code, when the check finds damage.
    """
    problems = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
    if problems != ["ok"]:
        error = sqlite3.DatabaseError("; ".join(problems[:3]))
        error.sqlite_errorcode = sqlite3.SQLITE_CORRUPT
        error.sqlite_errorname = "SQLITE_CORRUPT"
        raise error


def _check_version(db: sqlite3.Connection) -> int:
    """The schema version, after checking this version of Stagewise can read it.

    Raises:
        StagewiseError: The database was written by a newer version of Stagewise.
    """
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StagewiseError(
            f"the history was written by a newer version of Stagewise (schema "
            f"{version}, this version reads up to {SCHEMA_VERSION})")
    return int(version)


def _repair_interrupted(db: sqlite3.Connection) -> list[int]:
    """Mark ``"interrupted"`` every ``"running"`` run whose owner process is gone.

    Returns:
        The ids of the runs marked.
    """
    running = db.execute("SELECT id, owner FROM runs WHERE status = 'running'").fetchall()
    dead = [row[0] for row in running if not owner_alive(row[1])]
    if dead:
        marks = ", ".join("?" * len(dead))
        db.execute(f"UPDATE runs SET status = 'interrupted' "
                   f"WHERE status = 'running' AND id IN ({marks})", dead)
    return dead


def _migrate(db: sqlite3.Connection) -> None:
    """Brings the schema up to :data:`SCHEMA_VERSION`, in one transaction.

    Raises:
        StagewiseError: The database was written by a newer version of Stagewise.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        version = _check_version(db)
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
