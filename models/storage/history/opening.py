"""Opening a history folder: checked, migrated, repaired; kept aside if damaged; read-only.

At every opening, by any front end: ``PRAGMA quick_check`` (a damaged database is refused,
or with ``recover`` kept aside and a new one started), the schema is migrated, and runs left
``"running"`` by a process that is gone are marked ``"interrupted"``. A folder that cannot be
written is opened read-only instead.
"""

from __future__ import annotations

import errno
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from stagewise.models.errors import StagewiseError
from stagewise.models.storage.history.database import (
    _check_integrity,
    _check_version,
    _keep_damaged,
    _migrate,
    _open_database,
    _repair_interrupted,
)
from stagewise.models.storage.history.errors import _errors, _is_damaged

READ_ONLY_NOTICE = ("The history folder is read-only: past questions are shown, but new "
                    "answers will not be saved.")

_CANNOT_WRITE_SQLITE = (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM,
                        sqlite3.SQLITE_IOERR)
_CANNOT_WRITE_OS = (errno.EACCES, errno.EPERM, errno.EROFS)


@dataclass
class _Opened:
    """How a history folder was opened.

    Attributes:
        read_only: It is opened read-only (the folder or database cannot be written).
        damaged: Where a damaged database was kept aside at this opening, else None.
        notice: What to tell the person (``""`` when all is well).
        off: Why the history is off (``""`` when it works).
    """

    read_only: bool = False
    damaged: Path | None = None
    notice: str = ""
    off: str = ""


def _cannot_write(error: BaseException | None) -> bool:
    """Whether an error says the folder or database cannot be written (or made)."""
    if isinstance(error, OSError):
        return error.errno in _CANNOT_WRITE_OS
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _CANNOT_WRITE_SQLITE


def _set_up(folder: Path, database: Path) -> _Opened:
    """Check, migrate and repair the database; read-only if it cannot be written.

    Raises:
        StagewiseError: It cannot be opened, is damaged or is too new.
    """
    with _errors(f"open the history in {folder}"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            db = _open_database(database)
            try:
                _check_integrity(db)
                _migrate(db)
                _repair_interrupted(db)
            finally:
                db.close()
        except (sqlite3.Error, OSError) as error:
            if _is_damaged(error) or not _cannot_write(error) or not database.is_file():
                raise
            db = _open_database(database, read_only=True)
            try:
                _check_integrity(db)
                _check_version(db)
            finally:
                db.close()
            return _Opened(read_only=True, notice=READ_ONLY_NOTICE)
    return _Opened()


def _open_folder(folder: Path, database: Path, recover: bool) -> _Opened:
    """Open the history in ``folder``; see :class:`~.store.History` for ``recover``.

    Raises:
        StagewiseError: Without ``recover``: it cannot be opened, is damaged or is too new.
    """
    try:
        return _set_up(folder, database)
    except StagewiseError as error:
        if not recover:
            raise
        if not _is_damaged(error.__cause__):
            return _Opened(off=str(error), notice=f"History is off: {error}")
        try:
            kept = _keep_damaged(database)
        except OSError as move_error:
            off = f"{error} (and it could not be moved aside: {move_error})"
            return _Opened(off=off, notice=f"History is off: {off}")
        kept_notice = (f"The history database was damaged. It was kept as {kept.name} and a "
                       "new history was started; what can still be read from it can be "
                       "exported from the history sidebar.")
        try:
            opened = _set_up(folder, database)
        except StagewiseError as again:
            return _Opened(damaged=kept, off=str(again),
                           notice=f"{kept_notice} History is off: {again}")
        opened.damaged = kept
        opened.notice = kept_notice
        return opened
