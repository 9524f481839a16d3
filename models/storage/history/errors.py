"""Database and file errors explained for people, and turned into StagewiseError."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from stagewise.models.errors import StagewiseError

__all__ = ["describe_error"]


_SQLITE_REASONS: dict[int, str] = {
    sqlite3.SQLITE_FULL: "disk full",
    sqlite3.SQLITE_READONLY: "the history database is read-only",
    sqlite3.SQLITE_BUSY: "the history database is locked by another program",
    sqlite3.SQLITE_LOCKED: "the history database is locked",
    sqlite3.SQLITE_IOERR: "a disk error occurred",
    sqlite3.SQLITE_CORRUPT: "the history database is damaged",
    sqlite3.SQLITE_NOTADB: "the history database is not a database file",
    sqlite3.SQLITE_CANTOPEN: "the history database cannot be opened",
    sqlite3.SQLITE_PERM: "permission denied",
}

_OS_REASONS: dict[int, str] = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the disk is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def describe_error(error: sqlite3.Error | OSError) -> str:
    """A short explanation of a database or file error, for people (e.g. ``"disk full"``)."""
    if isinstance(error, OSError):
        reason = _OS_REASONS.get(error.errno or 0) or error.strerror or str(error)
        return f"{reason} ({error.filename})" if error.filename else reason
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in _SQLITE_REASONS:
        return _SQLITE_REASONS[code & 0xFF]
    return str(error) or type(error).__name__


def _is_damaged(error: BaseException | None) -> bool:
    """Whether SQLite says the file is not a database or is corrupt (not merely locked)."""
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


@contextmanager
def _errors(action: str) -> Iterator[None]:
    """Turn sqlite3 and OS errors into a StagewiseError saying ``could not {action}: …``."""
    try:
        yield
    except (sqlite3.Error, OSError) as error:
        raise StagewiseError(f"could not {action}: {describe_error(error)}") from error
