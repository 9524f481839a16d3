"""What can still be read from a damaged history database, exported as JSON.

Each table is read in rowid order; where a damaged page stops the reading, the rows it held
are skipped (probing past them one rowid at a time) and the reading goes on after them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stagewise.models.disk.atomic import write_atomic
from stagewise.models.errors import StagewiseError
from stagewise.models.storage.history.database import _open_database
from stagewise.models.storage.history.errors import _errors, describe_error

__all__ = ["ExportSummary", "export_readable"]

_GIVE_UP_AFTER = 20_000
"""Probes past a damaged stretch before a table is taken as unreadable from there on."""

_FIRST_ROWID = -(2**63)


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_readable` wrote.

    Attributes:
        target: The JSON file.
        runs: Runs exported.
        rows: Candidates, verdicts and checks exported with them.
        unreadable: Damaged stretches skipped (0: everything was read).
    """

    target: Path
    runs: int
    rows: int
    unreadable: int


def _readable_rows(db: sqlite3.Connection, table: str,
                   skipped: list[int]) -> Iterator[dict[str, Any]]:
    """The rows of ``table`` that can be read, in rowid order; damaged stretches skipped.

    Each skipped stretch adds one to ``skipped[0]``.
    """
    after, probes = _FIRST_ROWID, 0
    while probes <= _GIVE_UP_AFTER:
        try:
            for row in db.execute(f"SELECT rowid AS rowid_, * FROM {table} WHERE rowid > ? "
                                  "ORDER BY rowid", (after,)):
                after, probes = row["rowid_"], 0
                yield {k: v for k, v in zip(row.keys(), row, strict=True) if k != "rowid_"}
            return
        except sqlite3.DatabaseError:
            skipped[0] += probes == 0
            probes += 1
            if after == _FIRST_ROWID:
                after = 0
            after += 1


def _decoded(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _read_all(db: sqlite3.Connection, skipped: list[int]) -> list[dict[str, Any]]:
    """The readable runs, each with its readable candidates, verdicts and checks."""
    runs: dict[int, dict[str, Any]] = {}
    for row in _readable_rows(db, "runs", skipped):
        for key in ("settings", "stages", "timings"):
            row[key] = _decoded(row.get(key))
        runs[row["id"]] = {**row, "candidates": [], "verdicts": [], "checks": []}
    for table in ("candidates", "verdicts", "checks"):
        for row in _readable_rows(db, table, skipped):
            run = runs.get(row.get("run"))  # type: ignore[arg-type]
            if run is not None:
                run[table].append(row)
    return list(runs.values())


def export_readable(database: Path, target: Path) -> ExportSummary:
    """Copy every run that can still be read from a (damaged) history database into JSON.

    The database is opened read-only and never changed. The JSON holds ``source``,
    ``exported`` and ``runs``: each run's columns (settings, stages and timings decoded) with
    its ``candidates``, ``verdicts`` and ``checks``. Images stay in the history folder, named
    by the run's ``image`` (their SHA-256).

    Args:
        database: The database, e.g. :attr:`History.damaged`.
        target: The JSON file to write (replaced if it exists).

    Returns:
        What was written.

    Raises:
        StagewiseError: Nothing can be read from the database, or the file cannot be written.
    """
    skipped = [0]
    try:
        db = _open_database(Path(database), read_only=True)
    except sqlite3.Error as error:
        raise StagewiseError(f"nothing can be read from {Path(database).name}: "
                             f"{describe_error(error)}") from error
    try:
        runs = _read_all(db, skipped)
    except sqlite3.Error as error:  # the schema itself cannot be read
        raise StagewiseError(f"nothing can be read from {Path(database).name}: "
                             f"{describe_error(error)}") from error
    finally:
        db.close()
    document = {"source": str(database), "exported": datetime.now(UTC).isoformat(),
                "runs": runs}
    with _errors(f"export to {target}"):
        write_atomic(Path(target), json.dumps(document, ensure_ascii=False,
                                              indent=1).encode("utf-8"))
    rows = sum(len(r[t]) for r in runs for t in ("candidates", "verdicts", "checks"))
    return ExportSummary(Path(target), len(runs), rows, skipped[0])
