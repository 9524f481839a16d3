"""Every question asked, saved as it is answered: SQLite (WAL) plus content-addressed images.

A :class:`History` works on one folder (by default ``data_dir() / "history"``)::

    history.sqlite3        runs, candidates, verdicts and checks (journal_mode=WAL)
    images/ab/abcdef….png  each original image once, named by the SHA-256 of its bytes
    thumbs/abcdef….png     a thumbnail (at most 160 px a side) made from the prepared pixels

Each instance owns one sqlite3 connection, opened lazily by the first thread that uses it;
use one instance per thread (the GUI thread reads and deletes, the engine thread writes).
Every write is its own transaction and commits at once, so a crash or a kill loses nothing
already recorded. Each run keeps its owner process; any opening (the window's, the engine
thread's, ``stagewise ask``'s) and :meth:`History.repair_interrupted` mark ``"interrupted"``
the runs still ``"running"`` whose owner is gone, never a live process's run.

Every opening runs ``PRAGMA quick_check``: a damaged database is refused, or, opened with
``recover=True`` (the window's own opening), kept aside (:attr:`History.damaged`) and a new
one started; :func:`export_readable` copies what can still be read from it into JSON. A folder
that cannot be written opens read-only (:attr:`History.read_only`): runs can be read, not
saved.

Failures to write (a full disk, a read-only folder, a locked database) become
:class:`~stagewise.models.errors.StagewiseError` with a message for people; the instance stays
usable.

Qt-free.

Modules: :mod:`~stagewise.models.storage.history.records` (:class:`HistoryEntry`,
:class:`StoredRun`, :class:`RunNotFound`), :mod:`~stagewise.models.storage.history.schema` (the
database file name, schema version and migrations), :mod:`~stagewise.models.storage.history.errors`
(:func:`describe_error`, errors turned into StagewiseError),
:mod:`~stagewise.models.storage.history.owners` (which process owns a run, and whether it
lives), :mod:`~stagewise.models.storage.history.threads` (the questions asked one after
another about one open image: a run's ``thread`` is its thread's first run),
:mod:`~stagewise.models.storage.history.opening` (checked, migrated, repaired, kept
aside, read-only), :mod:`~stagewise.models.storage.history.salvage` (:func:`export_readable`),
:mod:`~stagewise.models.storage.history.files` (:func:`image_extension`, :data:`MIME_TYPES`,
thumbnails), :mod:`~stagewise.models.storage.history.rows` (a run's records written as rows, its
SearchResult rebuilt from them), :mod:`~stagewise.models.storage.history.database` (the connection's
settings, migrating, keeping a damaged database aside) and
:mod:`~stagewise.models.storage.history.store` (:class:`History`) and
:mod:`~stagewise.models.storage.history.recorder` (:class:`HistoryRecorder`: how the window's
engine thread and ``stagewise ask`` keep a run as it is answered, with its
:class:`RunSettings`).
"""

from __future__ import annotations

from stagewise.models.disk.atomic import write_atomic
from stagewise.models.storage.history.errors import describe_error
from stagewise.models.storage.history.files import MIME_TYPES, THUMBNAIL_SIZE, image_extension
from stagewise.models.storage.history.opening import READ_ONLY_NOTICE
from stagewise.models.storage.history.recorder import (
    HistoryRecorder,
    RecordedRun,
    RunSettings,
)
from stagewise.models.storage.history.records import RUN_RECORD_STATUSES as RUN_RECORD_STATUSES
from stagewise.models.storage.history.records import (
    HistoryEntry,
    RunNotFound,
    RunRecordStatus,
    StoredRun,
)
from stagewise.models.storage.history.salvage import ExportSummary, export_readable
from stagewise.models.storage.history.schema import BUSY_TIMEOUT_S as BUSY_TIMEOUT_S
from stagewise.models.storage.history.schema import DATABASE_NAME, SCHEMA_VERSION
from stagewise.models.storage.history.store import History

# RUN_RECORD_STATUSES and BUSY_TIMEOUT_S: importable from here, but not in __all__ (as before).

__all__ = [
    "DATABASE_NAME",
    "MIME_TYPES",
    "READ_ONLY_NOTICE",
    "SCHEMA_VERSION",
    "THUMBNAIL_SIZE",
    "ExportSummary",
    "History",
    "HistoryEntry",
    "HistoryRecorder",
    "RecordedRun",
    "RunNotFound",
    "RunRecordStatus",
    "RunSettings",
    "StoredRun",
    "describe_error",
    "export_readable",
    "image_extension",
    "write_atomic",
]
