"""The :class:`History` itself: one folder's database and files, written and read back.

See :mod:`stagewise.models.storage.history` for the layout and the threading rules.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from stagewise.models.disk.atomic import write_atomic
from stagewise.models.disk.paths import data_dir
from stagewise.models.errors import StagewiseError
from stagewise.models.events import (
    AnswerFinished,
    Candidate,
    CandidateFinished,
    Check,
    CorrectnessChecked,
    Event,
    JudgeVerdict,
    RunStarted,
    RunWarning,
    SearchResult,
    SegmentChosen,
    SegmentStarted,
    TokenStreamed,
    Verdict,
)
from stagewise.models.inference.images import PreparedImage
from stagewise.models.stages import STAGES, parse_answer
from stagewise.models.storage.history.database import (
    _fold,
    _open_database,
    _repair_interrupted,
    _rollback,
)
from stagewise.models.storage.history.errors import _errors
from stagewise.models.storage.history.files import _thumbnail_png, image_extension
from stagewise.models.storage.history.opening import _open_folder
from stagewise.models.storage.history.owners import current_owner
from stagewise.models.storage.history.pairs import (
    extra_images,
    has_pairs,
    link_pair,
    pair_column,
)
from stagewise.models.storage.history.records import HistoryEntry, RunNotFound, StoredRun
from stagewise.models.storage.history.rows import (
    _insert_records,
    _result,
    warnings_from,
    warnings_json,
)
from stagewise.models.storage.history.schema import DATABASE_NAME
from stagewise.models.storage.history.threads import has_threads, thread_columns, thread_root

__all__ = ["History"]


def _jsonable(value: Any) -> Any:
    """Fallback for json.dumps: enums by value, dataclasses as dicts, anything else as text."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _text(value: str) -> str:
    """``value`` as SQLite can store it: a file name that is not UTF-8 (Python holds its
    bytes as surrogate escapes) gets U+FFFD where those bytes were."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        raw = value.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def _now() -> str:
    return datetime.now(UTC).isoformat()



class History:
    """The saved runs in one folder. See :mod:`stagewise.models.storage.history` for the layout and
    threading."""

    def __init__(self, folder: Path | None = None, *, recover: bool = False) -> None:
        """Open (creating or migrating as needed) the history in ``folder``.

        Every opening checks the database (``PRAGMA quick_check``), migrates it, and marks
        ``"interrupted"`` the runs left ``"running"`` by a process that is gone (the runs of
        live processes, such as another window's answer, are left alone). A folder that
        cannot be written opens read-only: :attr:`read_only` is set, :attr:`notice` says so
        and every write raises StagewiseError.

        Args:
            folder: The history folder; default ``data_dir() / "history"``.
            recover: The app's own opening at startup: a damaged database is kept aside
                (:attr:`damaged`) and a new one started; any other failure leaves this
                history off (each call raises StagewiseError) instead of raising here.
                :attr:`notice` says what happened.

        Raises:
            StagewiseError: Without ``recover``: the folder or database cannot be created or
                opened, is damaged, or was written by a newer version of Stagewise.
        """
        self.folder = Path(folder) if folder is not None else data_dir() / "history"
        self._conn: sqlite3.Connection | None = None
        self._owner: int | None = None
        self._closed = False
        self._prefixes: dict[tuple[int, int], str] = {}
        self._columns: str | None = None  # the thread and pair columns, once read
        opened = _open_folder(self.folder, self.database, recover)
        self._off = opened.off  # why the history is off ("" when it works)
        self.notice = opened.notice  # what the app should tell the person about opening it
        self.read_only = opened.read_only  # new runs cannot be saved; old ones can be read
        self.damaged = opened.damaged  # a damaged database kept aside at this opening

    # -- paths ----------------------------------------------------------------------------

    @property
    def database(self) -> Path:
        """The SQLite database file."""
        return self.folder / DATABASE_NAME

    def image_path(self, sha256: str, ext: str) -> Path:
        """Where the original image with this SHA-256 and extension is stored."""
        return self.folder / "images" / sha256[:2] / f"{sha256}.{ext}"

    def thumbnail_path(self, sha256: str) -> Path:
        """Where the thumbnail of the image with this SHA-256 is stored."""
        return self.folder / "thumbs" / f"{sha256}.png"

    # -- connection -----------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """This instance's connection, opened by (and owned by) the first thread to use it."""
        if self._closed:
            raise StagewiseError("the history is closed")
        if self._off:
            raise StagewiseError(self._off)
        if self._conn is None:
            with _errors(f"open the history in {self.folder}"):
                self._conn = _open_database(self.database, read_only=self.read_only)
            self._owner = threading.get_ident()
        elif self._owner != threading.get_ident():
            raise RuntimeError("a History is used by one thread only; open another History "
                               "on the same folder in this thread")
        return self._conn

    @contextmanager
    def _transaction(self, action: str, *, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction (a write one takes the write lock at once); errors explained."""
        db = self._connection()
        with _errors(action):
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise

    def _write(self, action: str = "save to history"
               ) -> AbstractContextManager[sqlite3.Connection]:
        if self.read_only and not self._closed:
            raise StagewiseError(f"could not {action}: the history folder is read-only")
        return self._transaction(action, write=True)

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._transaction("read the history", write=False)

    def close(self) -> None:
        """Close the connection; the instance cannot be used afterwards. Safe to repeat."""
        self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    # -- writing --------------------------------------------------------------------------

    def start(self, image: PreparedImage, original: bytes, image_name: str, question: str,
              model: str, settings: dict[str, Any], *, thread: int | None = None,
              follow_up: bool = False,
              more_images: Sequence[tuple[PreparedImage, bytes, str]] = ()) -> int:
        """Save a new run, status ``"running"``, with its image and thumbnail.

        Args:
            image: The prepared image (its pixels make the thumbnail).
            original: The original encoded image bytes, stored as they are.
            image_name: The original file name, or a label such as ``"<clipboard>"``.
            question: The question.
            model: The model's display name (e.g. its file name).
            settings: JSON-able settings to keep with the run (enums are saved by value,
                dataclasses as dicts, other unknown values as text).
            thread: A run this question comes after, about the same open image: the new
                run joins that run's thread. None starts a new thread.
            follow_up: The question is asked with the thread's earlier questions and
                answers in context.
            more_images: A question about several images: the images after the first,
                in order, each as (prepared image, original bytes, name).

        Returns:
            The new run's id.

        Raises:
            StagewiseError: The run or its image could not be saved (e.g. disk full).
            ValueError: ``original`` is not the image's bytes (its SHA-256 differs).
        """
        for each, data in ((image, original), *((m[0], m[1]) for m in more_images)):
            if hashlib.sha256(data).hexdigest() != each.sha256:
                raise ValueError("the original bytes do not match the prepared image's "
                                 "SHA-256")
        sha = image.sha256
        ext = image_extension(original)
        settings_json = _text(json.dumps(settings, default=_jsonable, ensure_ascii=False))
        question, model, image_name = _text(question), _text(model), _text(image_name)
        with self._write() as db:  # files are written under the write lock: see delete()
            self._store_image(db, image, original, ext)
            root = None if thread is None else thread_root(db, thread)
            cursor = db.execute(
                "INSERT INTO runs (created, question, model, status, image, image_name, "
                "settings, owner, thread, follow_up) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, "
                "?, ?)",
                (_now(), question, model, sha, image_name, settings_json, current_owner(),
                 root, int(follow_up)))
            run_id = cursor.lastrowid
            assert run_id is not None
            for position, (more, data, name) in enumerate(more_images, 1):
                self._store_image(db, more, data, image_extension(data))
                db.execute("INSERT INTO run_images (run, position, image, image_name) "
                           "VALUES (?, ?, ?, ?)", (run_id, position, more.sha256, _text(name)))
        return run_id

    def link_comparison(self, first: int, second: int) -> None:
        """Keep two runs as a compared pair: one question answered by two configurations
        (:mod:`stagewise.models.compare`); each then names the other
        (:attr:`HistoryEntry.compared_with`).

        Raises:
            RunNotFound: Either run is not in the history.
            StagewiseError: It could not be saved.
        """
        with self._write() as db:
            for run_id in (first, second):
                if not self._exists(db, run_id):
                    raise RunNotFound(run_id)
            link_pair(db, first, second)

    def _store_image(self, db: sqlite3.Connection, image: PreparedImage, original: bytes,
                     ext: str) -> None:
        """Write the image and its thumbnail unless they are there already; add its row."""
        sha = image.sha256
        path = self.image_path(sha, ext)
        if not path.is_file():
            write_atomic(path, original)
        thumb = self.thumbnail_path(sha)
        if not thumb.is_file():
            write_atomic(thumb, _thumbnail_png(image))
        db.execute("INSERT OR IGNORE INTO images (sha256, ext, size) VALUES (?, ?, ?)",
                   (sha, ext, len(original)))

    def record(self, run_id: int, event: Event) -> None:
        """Save what ``event`` adds to the run; each saving call commits before returning.

        Saved: :class:`RunStarted` (the search parameters), :class:`CandidateFinished`,
        :class:`JudgeVerdict`, :class:`CorrectnessChecked`, :class:`RunWarning`,
        :class:`SegmentChosen` (marks the winner, extends the chosen answer) and
        :class:`AnswerFinished` (the final status, the answer, its stages, timings and
        warnings; candidates, verdicts and checks are replaced by the result's).
        :class:`SegmentStarted` is remembered in memory (its prefix becomes part of the answer
        when the segment is chosen). Other events cost nothing. Events for a run
        that was deleted are dropped.

        Args:
            run_id: The run, from :meth:`start`.
            event: The search's event.

        Raises:
            StagewiseError: The event could not be saved (e.g. disk full).
        """
        if isinstance(event, TokenStreamed):
            return
        match event:
            case SegmentStarted(segment=no, prefix=prefix):
                self._prefixes[(run_id, no)] = prefix
            case RunStarted():
                self._update_run(run_id, "strategy = ?, beam = ?, selection = ?, seed = ?, "
                                 "mode = ?", (event.strategy, event.beam, event.select,
                                              event.seed, event.mode))
            case CandidateFinished(candidate=c):
                self._insert_rows(run_id, [c], [], [])
            case JudgeVerdict(verdict=v):
                self._insert_rows(run_id, [], [v], [])
            case CorrectnessChecked(check=check):
                self._insert_rows(run_id, [], [], [check])
            case RunWarning():
                self._warn_run(run_id, event)
            case SegmentChosen():
                self._choose(run_id, event)
            case AnswerFinished(result=result):
                self._finish(run_id, result)

    def repair_interrupted(self) -> list[int]:
        """Mark ``"interrupted"`` the runs still ``"running"`` whose owner process is gone.

        Opening a history does this already; call it to notice a writer that died since
        (e.g. a ``stagewise ask`` killed while the window is open). Cheap when nothing is
        running. Does nothing on a read-only history.

        Returns:
            The ids of the runs marked.

        Raises:
            StagewiseError: The history cannot be read or written.
        """
        if self.read_only:
            return []
        with self._read() as db:
            if db.execute("SELECT 1 FROM runs WHERE status = 'running' LIMIT 1").fetchone() is None:
                return []
        with self._write("repair the history") as db:
            return _repair_interrupted(db)

    def fail(self, run_id: int, message: str) -> None:
        """Mark the run ``"failed"`` with the error message.

        Raises:
            StagewiseError: It could not be saved.
        """
        self._update_run(run_id, "status = 'failed', error = ?", (message,))

    def _update_run(self, run_id: int, assignments: str, values: tuple[Any, ...]) -> None:
        with self._write() as db:
            db.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*values, run_id))

    @staticmethod
    def _exists(db: sqlite3.Connection, run_id: int) -> bool:
        return db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None

    def _insert_rows(self, run_id: int, candidates: Iterable[Candidate],
                     verdicts: Iterable[Verdict], checks: Iterable[Check]) -> None:
        with self._write() as db:
            if self._exists(db, run_id):
                _insert_records(db, run_id, candidates, verdicts, checks, chosen=set())

    def _warn_run(self, run_id: int, warning: RunWarning) -> None:
        with self._write() as db:
            row = db.execute("SELECT warnings FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is not None:
                db.execute("UPDATE runs SET warnings = ? WHERE id = ?",
                           (warnings_json((*warnings_from(row["warnings"]), warning)), run_id))

    def _choose(self, run_id: int, event: SegmentChosen) -> None:
        prefix = self._prefixes.pop((run_id, event.segment), "")
        with self._write() as db:
            row = db.execute("SELECT answer_text FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return
            answer = row["answer_text"] + prefix + event.text
            db.execute("UPDATE candidates SET chosen = (idx = ?) WHERE run = ? AND segment = ?",
                       (event.candidate, run_id, event.segment))
            if len(event.scores) > 1:  # a lone candidate was not scored by a selection
                db.executemany(
                    "UPDATE candidates SET score = ? WHERE run = ? AND segment = ? AND idx = ?",
                    [(score, run_id, event.segment, index)
                     for index, score in enumerate(event.scores)])
            db.execute("UPDATE runs SET answer_text = ?, conclusion = ? WHERE id = ?",
                       (answer, parse_answer(answer).conclusion, run_id))

    def _finish(self, run_id: int, result: SearchResult) -> None:
        self._prefixes = {k: v for k, v in self._prefixes.items() if k[0] != run_id}
        stages = json.dumps({s.value: result.stages.get(s, "") for s in STAGES},
                            ensure_ascii=False)
        timings = json.dumps(dataclasses.asdict(result.timings))
        with self._write() as db:
            if not self._exists(db, run_id):
                return
            db.execute(
                "UPDATE runs SET status = ?, strategy = ?, beam = ?, selection = ?, seed = ?, "
                "mode = ?, answer_text = ?, conclusion = ?, stages = ?, timings = ?, "
                "warnings = ? WHERE id = ?",
                (result.status, result.strategy, result.beam, result.select, result.seed,
                 result.mode, result.answer_text, result.conclusion, stages, timings,
                 warnings_json(result.warnings) if result.warnings else None, run_id))
            for table in ("candidates", "verdicts", "checks"):
                db.execute(f"DELETE FROM {table} WHERE run = ?", (run_id,))
            _insert_records(db, run_id, result.candidates, result.verdicts, result.checks,
                            chosen=set(result.chosen))

    # -- reading --------------------------------------------------------------------------

    def entries(self, search: str = "", limit: int = 500, *,
                threads: bool = False) -> list[HistoryEntry]:
        """The saved runs, newest first.

        Args:
            search: Keep only runs whose question or any of whose four stages (the chosen
                text: Summary, Caption, Reasoning, Conclusion) contains this text, ignoring
                case, Unicode-aware; ``""`` keeps all.
            limit: At most this many entries.
            threads: Keep each thread's runs together, oldest first, the threads ordered by
                their newest run (newest first).

        Returns:
            The entries.

        Raises:
            StagewiseError: The history cannot be read.
        """
        with self._read() as db:
            query = (f"SELECT id, created, question, model, status, conclusion, image, beam, "
                     f"strategy, {self._entry_columns(db)} FROM runs")
            params: list[Any] = []
            if search:
                query += (" WHERE instr(sw_fold(question), ?) > 0"
                          " OR instr(sw_fold(conclusion), ?) > 0"
                          " OR instr(sw_stage_words(answer_text), ?) > 0")
                params += [_fold(search)] * 3
            if threads:
                query = (f"SELECT * FROM ({query}) ORDER BY max(id) OVER (PARTITION BY "
                         "coalesce(thread, id)) DESC, id ASC LIMIT ?")
            else:
                query += " ORDER BY id DESC LIMIT ?"
            params.append(max(0, limit))
            rows = db.execute(query, params).fetchall()
        return [self._entry(row) for row in rows]

    def thread(self, run_id: int) -> list[HistoryEntry]:
        """The runs of ``run_id``'s thread (the questions asked about the same open image,
        one after another), oldest first.

        Raises:
            RunNotFound: There is no such run.
            StagewiseError: The history cannot be read.
        """
        with self._read() as db:
            select = (f"SELECT id, created, question, model, status, conclusion, image, beam, "
                      f"strategy, {self._entry_columns(db)} FROM runs")
            row = db.execute(f"{select} WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise RunNotFound(run_id)
            if not has_threads(db):
                return [self._entry(row)]
            root = row["thread"] if row["thread"] is not None else row["id"]
            rows = db.execute(f"{select} WHERE id = ? OR thread = ? ORDER BY id",
                              (root, root)).fetchall()
        return [self._entry(r) for r in rows]

    def _entry_columns(self, db: sqlite3.Connection) -> str:
        """The thread and compared-with columns to select. Read from the schema once: the
        list is refreshed as every answer starts, and an open history's schema only ever
        gains them (a newer Stagewise migrating it meanwhile)."""
        if self._columns is None:
            self._columns = f"{thread_columns(db)}, {pair_column(db)}"
        return self._columns

    def _entry(self, row: sqlite3.Row) -> HistoryEntry:
        thumb = self.thumbnail_path(row["image"])
        return HistoryEntry(
            id=row["id"],
            created=datetime.fromisoformat(row["created"]),
            question=row["question"],
            model=row["model"],
            status=row["status"],
            conclusion=row["conclusion"],
            thumbnail=thumb if thumb.is_file() else None,
            beam=row["beam"],
            strategy=row["strategy"],
            thread=row["thread"] if row["thread"] != row["id"] else None,
            follow_up=bool(row["follow_up"]),
            compared_with=row["compared_with"],
        )

    def load(self, run_id: int) -> StoredRun:
        """One run with everything saved about it.

        Args:
            run_id: The run's id.

        Returns:
            The run; see :class:`StoredRun` for what an unfinished run holds.

        Raises:
            RunNotFound: There is no such run (a StagewiseError and a KeyError).
            StagewiseError: The history cannot be read.
        """
        with self._read() as db:
            row = db.execute(f"SELECT runs.*, images.ext, {thread_columns(db)}, "
                             f"{pair_column(db)} FROM runs JOIN images ON images.sha256 = "
                             "runs.image WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise RunNotFound(run_id)
            candidates = db.execute("SELECT * FROM candidates WHERE run = ? ORDER BY id",
                                    (run_id,)).fetchall()
            verdicts = db.execute("SELECT * FROM verdicts WHERE run = ? ORDER BY id",
                                  (run_id,)).fetchall()
            checks = db.execute("SELECT * FROM checks WHERE run = ? ORDER BY id",
                                (run_id,)).fetchall()
            more = extra_images(db, run_id)
        settings = json.loads(row["settings"])
        return StoredRun(
            entry=self._entry(row),
            image_path=self.image_path(row["image"], row["ext"]),
            image_name=row["image_name"],
            settings=settings,
            error=row["error"],
            result=_result(row, settings, candidates, verdicts, checks),
            more_images=tuple((self.image_path(m["image"], m["ext"]), m["image_name"])
                              for m in more),
        )

    # -- deleting -------------------------------------------------------------------------

    def delete(self, run_ids: Iterable[int]) -> None:
        """Delete runs, and the image and thumbnail files no remaining run uses.

        Unknown ids are ignored. Files are removed under the database's write lock, after
        checking again that no run uses them, so a run started meanwhile keeps its image.

        Raises:
            StagewiseError: The runs or files could not be deleted.
        """
        ids = sorted({int(i) for i in run_ids})
        if not ids:
            return
        marks = ", ".join("?" * len(ids))
        with self._write("delete from the history") as db:
            shas = [r[0] for r in db.execute(
                f"SELECT DISTINCT image FROM runs WHERE id IN ({marks})", ids)]
            if pairs := has_pairs(db):
                shas += [r[0] for r in db.execute(
                    f"SELECT DISTINCT image FROM run_images WHERE run IN ({marks})", ids)]
                db.execute(f"UPDATE runs SET compared_with = NULL WHERE compared_with IN "
                           f"({marks})", ids)
            db.execute(f"DELETE FROM runs WHERE id IN ({marks})", ids)
            still_used = ("(SELECT 1 FROM runs WHERE image = ?1)" + (
                " AND NOT EXISTS (SELECT 1 FROM run_images WHERE image = ?1)" if pairs else ""))
            db.executemany(f"DELETE FROM images WHERE sha256 = ?1 AND NOT EXISTS {still_used}",
                           [(s,) for s in dict.fromkeys(shas)])
        if shas:
            self._remove_orphan_files(shas)

    def _remove_orphan_files(self, shas: list[str]) -> None:
        with self._write("delete from the history") as db:
            for sha in shas:
                if db.execute("SELECT 1 FROM images WHERE sha256 = ?", (sha,)).fetchone():
                    continue  # asked again since: a run uses it
                for path in (self.folder / "images" / sha[:2]).glob(f"{sha}.*"):
                    path.unlink(missing_ok=True)
                self.thumbnail_path(sha).unlink(missing_ok=True)
