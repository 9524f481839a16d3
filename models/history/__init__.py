"""Every question asked, saved as it is answered: SQLite (WAL) plus content-addressed images.

A :class:`History` works on one folder (by default ``data_dir() / "history"``)::

    history.sqlite3        runs, candidates, verdicts and checks (journal_mode=WAL)
    images/ab/abcdef….png  each original image once, named by the SHA-256 of its bytes
    thumbs/abcdef….png     a thumbnail (at most 160 px a side) made from the prepared pixels

Each instance owns one sqlite3 connection, opened lazily by the first thread that uses it;
use one instance per thread (the GUI thread reads and deletes, the engine thread writes).
Every write is its own transaction and commits at once, so a crash or a kill loses nothing
already recorded. A run that was still ``"running"`` when its writer died is marked
``"interrupted"`` by an instance opened with ``recover=True`` (the GUI does this once at
startup, before it starts any engine thread).

Failures to write (a full disk, a read-only folder, a locked database) become
:class:`~models.errors.StagewiseError` with a message for people; the instance stays usable.

Qt-free.

Modules: :mod:`~models.history.records` (:class:`HistoryEntry`, :class:`StoredRun`,
:class:`RunNotFound`), :mod:`~models.history.schema` (the database file name, schema version
and migrations), :mod:`~models.history.errors` (:func:`describe_error`, errors turned into
StagewiseError), :mod:`~models.history.files` (:func:`image_extension`, :data:`MIME_TYPES`,
thumbnails), :mod:`~models.history.rows` (a run's records written as rows, its SearchResult
rebuilt from them), :mod:`~models.history.database` (the connection's settings, migrating,
keeping a damaged database aside) and :mod:`~models.history.store` (:class:`History`).
"""

from __future__ import annotations

from models.files import write_atomic
from models.history.errors import describe_error
from models.history.files import MIME_TYPES, THUMBNAIL_SIZE, image_extension
from models.history.records import RUN_RECORD_STATUSES as RUN_RECORD_STATUSES
from models.history.records import (
    HistoryEntry,
    RunNotFound,
    RunRecordStatus,
    StoredRun,
)
from models.history.schema import BUSY_TIMEOUT_S as BUSY_TIMEOUT_S
from models.history.schema import DATABASE_NAME, SCHEMA_VERSION
from models.history.store import History

# RUN_RECORD_STATUSES and BUSY_TIMEOUT_S: importable from here, but not in __all__ (as before).

__all__ = [
    "DATABASE_NAME",
    "MIME_TYPES",
    "SCHEMA_VERSION",
    "THUMBNAIL_SIZE",
    "History",
    "HistoryEntry",
    "RunNotFound",
    "RunRecordStatus",
    "StoredRun",
    "describe_error",
    "image_extension",
    "write_atomic",
]
