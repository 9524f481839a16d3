"""The history database: its file name, schema version and the migrations between versions."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

__all__ = ["BUSY_TIMEOUT_S", "DATABASE_NAME", "SCHEMA_VERSION"]

DATABASE_NAME = "history.sqlite3"
SCHEMA_VERSION = 6
BUSY_TIMEOUT_S = 10.0
"""How long a write waits for another connection's write to finish before giving up."""


def _create_schema(db: sqlite3.Connection) -> None:
    """Version 0 → 1: the first schema."""
    _execute_all(db, """
        CREATE TABLE images (
            sha256 TEXT PRIMARY KEY,
            ext TEXT NOT NULL,
            size INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created TEXT NOT NULL,
            question TEXT NOT NULL,
            model TEXT NOT NULL,
            status TEXT NOT NULL,
            error TEXT NOT NULL DEFAULT '',
            image TEXT NOT NULL REFERENCES images(sha256),
            image_name TEXT NOT NULL,
            settings TEXT NOT NULL DEFAULT '{}',
            strategy TEXT,
            beam INTEGER,
            selection TEXT,
            seed INTEGER,
            mode TEXT,
            answer_text TEXT NOT NULL DEFAULT '',
            conclusion TEXT NOT NULL DEFAULT '',
            stages TEXT,
            timings TEXT
        );
        CREATE INDEX runs_image ON runs(image);
        CREATE INDEX runs_status ON runs(status);
        CREATE TABLE candidates (
            id INTEGER PRIMARY KEY,
            run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            segment INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            unit TEXT,
            text TEXT NOT NULL,
            n_tokens INTEGER NOT NULL,
            mean_logprob REAL,
            finish TEXT NOT NULL,
            chosen INTEGER NOT NULL DEFAULT 0,
            UNIQUE (run, segment, idx)
        );
        CREATE TABLE verdicts (
            id INTEGER PRIMARY KEY,
            run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            unit TEXT,
            segment INTEGER NOT NULL,
            round INTEGER NOT NULL,
            pair_first INTEGER NOT NULL,
            pair_second INTEGER NOT NULL,
            winner INTEGER NOT NULL,
            reason TEXT NOT NULL,
            text TEXT NOT NULL,
            forced INTEGER NOT NULL
        );
        CREATE INDEX verdicts_run ON verdicts(run);
        CREATE TABLE checks (
            id INTEGER PRIMARY KEY,
            run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            segment INTEGER NOT NULL,
            candidate INTEGER NOT NULL,
            correct INTEGER NOT NULL,
            text TEXT NOT NULL
        );
        CREATE INDEX checks_run ON checks(run);
    """)


def _add_owners(db: sqlite3.Connection) -> None:
    """Version 1 → 2: each run keeps its owner process (see ``owners.py``)."""
    db.execute("ALTER TABLE runs ADD COLUMN owner TEXT")


def _add_threads(db: sqlite3.Connection) -> None:
    """Version 2 → 3: questions asked again about the same open image form a thread.

    ``thread`` is the id of the thread's first run (NULL: the run is its own thread, as
    every run written before threads is); ``follow_up`` is 1 when the question was asked
    with the thread's earlier questions and answers in its prompt. There is no foreign
    key: deleting a thread's first run leaves the others one thread.
    """
    _execute_all(db, """
        ALTER TABLE runs ADD COLUMN thread INTEGER;
        ALTER TABLE runs ADD COLUMN follow_up INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX runs_thread ON runs(thread)
    """)


def _add_scores(db: sqlite3.Connection) -> None:
    """Version 3 → 4: each candidate keeps the score its selection gave it (NULL: a lone
    candidate, one not yet scored, or a run saved before scores were kept) and its mean
    entropy where the backend measured it; each verdict
    whether its reply named no response (``unread``) and, when decided by probabilities,
    the winner's (``probability``)."""
    _execute_all(db, """
        ALTER TABLE candidates ADD COLUMN score REAL;
        ALTER TABLE candidates ADD COLUMN mean_entropy REAL;
        ALTER TABLE verdicts ADD COLUMN unread INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE verdicts ADD COLUMN probability REAL
    """)


def _add_pairs_and_images(db: sqlite3.Connection) -> None:
    """Version 4 → 5: compared pairs, and questions about several images.

    ``compared_with`` is the id of the other run of a comparison (one question answered by
    two configurations; each run names the other; NULL: not compared). ``run_images``
    holds the images of a question about several, after the first (which stays in
    ``runs.image``), in the order they were asked about, from ``position`` 1.
    """
    _execute_all(db, """
        ALTER TABLE runs ADD COLUMN compared_with INTEGER;
        CREATE TABLE run_images (
            run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            image TEXT NOT NULL REFERENCES images(sha256),
            image_name TEXT NOT NULL,
            PRIMARY KEY (run, position)
        );
        CREATE INDEX run_images_image ON run_images(image)
    """)


def _add_warnings(db: sqlite3.Connection) -> None:
    """Version 5 → 6: each run keeps the warnings it started with (a context longer than the
    model was trained for, a picture outside what the model knows), as a JSON list of
    ``{"kind", "text"}`` objects (NULL: none, or a run saved before warnings were kept)."""
    db.execute("ALTER TABLE runs ADD COLUMN warnings TEXT")


def _execute_all(db: sqlite3.Connection, script: str) -> None:
    """Run ``;``-separated statements in the open transaction (``executescript`` commits)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    0: _create_schema,
    1: _add_owners,
    2: _add_threads,
    3: _add_scores,
    4: _add_pairs_and_images,
    5: _add_warnings,
}
"""Schema version n → the step that brings a database from n to n + 1 (inside a transaction).

To change the schema: add the step for the current version and raise ``SCHEMA_VERSION``."""
