"""Asking every image of a folder the same questions, on one session.

The model is loaded once (the caller's :class:`~stagewise.models.session.Session`); each
image is read, checked and encoded once (:meth:`Session.prepare`), then asked each
question, which evaluates only the question's own tokens. Every answer is recorded in the
history like any other, and written as a row of the results file the moment it is done.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from stagewise.models.batch.results import BatchRow, ResultsFile, row_key
from stagewise.models.errors import Cancelled, ImageError, StagewiseError
from stagewise.models.events import AnswerFinished, SearchResult
from stagewise.models.inference.images import PreparedImage, load_image, read_image_file
from stagewise.models.storage.settings_values import encode

if TYPE_CHECKING:
    from stagewise.models.reasoning.search_settings import SearchSettings
    from stagewise.models.session import Session
    from stagewise.models.storage.history import HistoryRecorder, RecordedRun, RunSettings

__all__ = ["BatchJob", "BatchProgress", "BatchSummary", "run_batch", "settings_key"]


@dataclass(frozen=True)
class BatchJob:
    """What a batch asks.

    Attributes:
        files: The files to ask about, in order (:func:`~stagewise.models.batch.folder.
            folder_files`); those that are not readable images become "bad file" rows.
        questions: The questions, each asked about every image.
        settings: What the answers are asked with, as the history keeps it (its search is
            the one run).
        model: Who answers, as the history shows it.
        key: The settings' part of each row's key (:func:`settings_key`).
    """

    files: tuple[Path, ...]
    questions: tuple[str, ...]
    settings: RunSettings
    model: str
    key: str

    @property
    def search(self) -> SearchSettings:
        return self.settings.search

    @property
    def total(self) -> int:
        """Rows the batch makes: one per file and question."""
        return len(self.files) * len(self.questions)


@dataclass(frozen=True)
class BatchProgress:
    """Where a batch is.

    Attributes:
        done: Rows dealt with in this run (answered, failed, bad, or already in the file).
        total: Rows the batch makes.
        answered: Questions answered in this run.
        elapsed_s: Seconds since the run started.
        left_s: Seconds the rest should take at the pace of this run's answers (None
            before the first answer).
        current: The file being asked about.
    """

    done: int
    total: int
    answered: int
    elapsed_s: float
    left_s: float | None
    current: str


@dataclass
class BatchSummary:
    """What a batch did.

    Attributes:
        answered: Rows answered (finished) in this run.
        already_done: Rows the results file held already, skipped.
        bad_files: Each file that is not a readable image, and why.
        failed: Rows whose answer failed.
        cancelled: The run was stopped before the end.
        image_encodes: Images the engine encoded in this run (0 for a server).
        seconds: The run's time.
    """

    answered: int = 0
    already_done: int = 0
    bad_files: list[tuple[str, str]] = field(default_factory=list)
    failed: int = 0
    cancelled: bool = False
    image_encodes: int = 0
    seconds: float = 0.0


def settings_key(model: str, search: SearchSettings, **extra: object) -> str:
    """A short hash of what an answer depends on besides its image and question: the
    model's file (or the server) and the search's settings (seed included), with
    ``extra`` (the image-token cap, say). Two runs with the same key give the same rows."""
    data = {"model": model, "search": encode(dataclasses.asdict(search)), **extra}
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def run_batch(session: Session, job: BatchJob, results: ResultsFile, *,
              recorder: HistoryRecorder | None = None,
              cancel: threading.Event | None = None,
              on_progress: Callable[[BatchProgress], None] | None = None,
              on_row: Callable[[BatchRow], None] | None = None) -> BatchSummary:
    """Ask every file of ``job`` its questions and append a row for each to ``results``.

    Rows ``results`` already holds (same file path and content, question and settings;
    finished or a bad file) are skipped. A file that is not a readable image gives one
    "bad file" row per question with why, and the run goes on; so does a failed answer.

    Args:
        session: The loaded model (or a server).
        job: What to ask.
        results: The results file, read.
        recorder: Where each answer is recorded in the history (None: nowhere).
        cancel: Set it to stop: the answer under way stops within a decode step and is not
            written; every row before it is.
        on_progress: Told before each file and after each row.
        on_row: Told each row written.

    Returns:
        What was done.

    Raises:
        StagewiseError: The results file cannot be written.
    """
    cancel = cancel or threading.Event()
    summary = BatchSummary()
    start = time.perf_counter()
    encodes_before = _encodes(session)
    answer_s = 0.0
    done = 0

    def progress(current: str) -> None:
        if on_progress is None:
            return
        elapsed = time.perf_counter() - start
        left = (answer_s / summary.answered * (job.total - done)
                if summary.answered else None)
        on_progress(BatchProgress(done, job.total, summary.answered, elapsed, left, current))

    def write(row: BatchRow) -> None:
        nonlocal done, answer_s
        results.append(row)
        done += 1
        if row.status == "finished":
            summary.answered += 1
            answer_s += row.seconds
        elif row.status == "failed":
            summary.failed += 1
        if on_row is not None:
            on_row(row)
        progress(row.path)

    for path in job.files:
        if cancel.is_set():
            summary.cancelled = True
            break
        name = str(path)
        progress(name)
        try:
            data = read_image_file(path, name)
        except ImageError as error:
            data, problem = None, error.problem
        else:
            problem = ""
        digest = hashlib.sha256(data).hexdigest() if data is not None else ""
        todo = [q for q in job.questions
                if not results.done(row_key(name, digest, q, job.key))]
        skipped = len(job.questions) - len(todo)
        summary.already_done += skipped
        done += skipped
        if not todo:
            continue
        image = None
        if data is not None:
            try:
                image = load_image(data, name=name)
            except ImageError as error:
                problem = error.problem
        if image is None:
            summary.bad_files.append((name, problem))
            for question in todo:
                write(BatchRow(name, question, status="bad file", error=problem,
                               sha256=digest, settings=job.key))
            continue
        if not _ask_all(session, job, image, data or b"", path, todo, digest, recorder,
                        cancel, write):
            summary.cancelled = True
            break
    summary.image_encodes = _encodes(session) - encodes_before
    summary.seconds = time.perf_counter() - start
    return summary


def _ask_all(session: Session, job: BatchJob, image: PreparedImage, data: bytes, path: Path,
             questions: Sequence[str], digest: str, recorder: HistoryRecorder | None,
             cancel: threading.Event, write: Callable[[BatchRow], None]) -> bool:
    """Encode ``image`` once and ask it ``questions``, writing a row for each; False when
    the run was stopped."""
    name = str(path)
    try:
        session.prepare(image, cancel, job.search)
    except Cancelled:
        return False
    except StagewiseError as error:  # the image cannot be encoded: each question fails
        for question in questions:
            write(BatchRow(name, question, status="failed", error=str(error),
                           sha256=digest, settings=job.key))
        return True
    thread: int | None = None
    for question in questions:
        record = _start_record(recorder, image, data, path, question, job, thread)
        try:
            result = _answer(session, image, question, job.search, cancel, record)
        except Cancelled:
            record.fail("stopped")
            return False
        except StagewiseError as error:
            record.fail(str(error))
            write(BatchRow(name, question, status="failed", error=str(error),
                           sha256=digest, settings=job.key, run_id=record.run_id))
            continue
        if result.status == "cancelled":
            return False
        if record.saved and thread is None:
            thread = record.run_id
        write(_row(name, question, result, digest, job.key, record.run_id))
    return not cancel.is_set()


def _start_record(recorder: HistoryRecorder | None, image: PreparedImage, data: bytes,
                  path: Path, question: str, job: BatchJob, thread: int | None
                  ) -> RecordedRun:
    from stagewise.models.storage.history import RecordedRun

    if recorder is None:
        return RecordedRun()
    return recorder.start(image, data, path.name, question, job.model, job.settings,
                          thread=thread)


def _answer(session: Session, image: PreparedImage, question: str, search: SearchSettings,
            cancel: threading.Event, record: RecordedRun) -> SearchResult:
    result = None
    for event in session.ask(image, question, search, cancel):
        record.add(event)
        if isinstance(event, AnswerFinished):
            result = event.result
    if result is None:
        raise StagewiseError("the search ended without an answer")
    return result


def _row(name: str, question: str, result: SearchResult, digest: str, key: str,
         run_id: int) -> BatchRow:
    """The row of a finished answer."""
    return BatchRow(name, question, conclusion=result.conclusion.strip(),
                    confidence=_confidence(result), seconds=round(result.timings.total_s, 4),
                    status="finished", image_tokens=result.timings.image_tokens,
                    sha256=digest, settings=key, run_id=run_id)


def _confidence(result: SearchResult) -> str:
    """How sure the answer is, as the window's badge says it
    (:func:`~stagewise.models.reasoning.confidence.confidence_of`); "" when it has no
    conclusion to be sure of."""
    from stagewise.models.reasoning.confidence import confidence_of

    confidence = confidence_of(result)
    return confidence.label if confidence is not None else ""


def _encodes(session: Session) -> int:
    return session.engine.stats.image_encodes if session.engine is not None else 0
