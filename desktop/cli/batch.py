"""``stagewise batch``: every image of a folder asked the same questions, into CSV or JSONL.

The model loads once and each image is encoded once for all its questions; a progress line
on stderr says how far it is and how long the rest should take. Ctrl+C stops it between two
decode steps, keeping every row written; running the same command again skips those rows.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from stagewise.desktop.cli.args import (
    add_answer_arguments,
    checked_question,
    image_tokens_of,
    question_file,
)
from stagewise.desktop.cli.ask import (
    EXIT_CANCELLED,
    engine_settings,
    image_tokens_note,
    run_settings,
    search_settings,
)
from stagewise.desktop.cli.progress_line import ProgressLine
from stagewise.models.errors import Cancelled, StagewiseError

if TYPE_CHECKING:
    from stagewise.models.batch import BatchProgress, BatchRow

PIPE_PROGRESS_S = 10.0
"""Off a terminal, a progress line at most this often (each is a line of its own)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``batch`` command to the ``stagewise`` parser."""
    batch = sub.add_parser(
        "batch", help="ask every image in a folder the same questions, into a CSV or JSONL "
                      "file")
    batch.add_argument("folder", type=Path, metavar="FOLDER",
                       help="the folder whose files are asked about (not its sub-folders); "
                            "files that are not readable images are listed with why")
    batch.add_argument("--question", action="append", default=[],
                       help="a question asked about every image; give it again for more")
    batch.add_argument("--questions", action="append", default=[], type=question_file,
                       metavar="FILE",
                       help="a UTF-8 text file of questions, one a line (blank lines left "
                            "out), asked after the --question ones")
    batch.add_argument("--out", type=Path, required=True, metavar="FILE",
                       help="the results: a .csv or .jsonl file, one row per image and "
                            "question (path, question, conclusion, confidence, seconds, "
                            "status, error, ...); rows already in it are skipped")
    add_answer_arguments(batch, auto_beam=False)


def questions_of(args: argparse.Namespace) -> tuple[str, ...]:
    """The questions, in order, each once.

    Raises:
        StagewiseError: There are none, or one is not a question.
    """
    asked = [*args.question, *(line for text in args.questions for line in text.splitlines()
                               if line.strip())]
    questions = tuple(dict.fromkeys(checked_question(q).strip() for q in asked))
    if not questions:
        raise StagewiseError("no question: give one with --question or --questions FILE")
    return questions


def run(args: argparse.Namespace) -> int:
    """Run ``stagewise batch``; returns the exit status (errors raise StagewiseError)."""
    from stagewise.models.batch import (
        BatchJob,
        ResultsFile,
        folder_files,
        run_batch,
        settings_key,
    )
    from stagewise.models.inference.engine import Engine
    from stagewise.models.session import Session, plan
    from stagewise.models.storage.history import HistoryRecorder

    questions = questions_of(args)
    out = args.out.absolute()
    files = tuple(path.absolute() for path in folder_files(args.folder)
                  if path.absolute() != out)
    if not files:
        raise StagewiseError(f"{args.folder}: the folder has no files")
    settings = search_settings(args)
    args.image_tokens = image_tokens_of(args)
    results = ResultsFile(out)  # before the model: a file that is not ours fails fast
    loads = Engine.loads
    cancel = threading.Event()
    # from here Ctrl+C stops the batch, also while the model loads (as in ask)
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.set())
    try:
        load = plan(args.model, args.mmproj, engine_settings(args), settings)
        if load.note:
            print(f"stagewise: {load.note}", file=sys.stderr)
        session = Session(load, lambda _done: not cancel.is_set())
    except BaseException as error:
        signal.signal(signal.SIGINT, previous)
        results.close()
        if isinstance(error, Cancelled):
            raise KeyboardInterrupt from None
        raise
    progress = _Progress(sys.stderr)
    try:
        with session, results, HistoryRecorder(warn=progress.warn,
                                               save=not args.no_history) as recorder:
            if note := image_tokens_note(args, session):
                progress.warn(note)
            search = session.settled(settings)
            session.verifier(search)  # a second model loads before the first image
            key = settings_key(str(load.model), search, mmproj=str(load.mmproj),
                               image_tokens=args.image_tokens)
            job = BatchJob(files, questions, run_settings(args, search, None),
                           load.model.name, key)
            summary = run_batch(session, job, results, recorder=recorder, cancel=cancel,
                                on_progress=progress.show, on_row=progress.row)
    finally:
        signal.signal(signal.SIGINT, previous)
    progress.line.clear()
    rows = sum(1 for row in results.rows if row.settings == key)
    bad = len(summary.bad_files)
    parts = [f"{summary.answered} answer{'s' if summary.answered != 1 else ''} written to "
             f"{args.out}"]
    if summary.already_done:
        parts.append(f"{summary.already_done} already there")
    if bad:
        parts.append(f"{bad} bad file{'s' if bad != 1 else ''}")
    if summary.failed:
        parts.append(f"{summary.failed} failed")
    print(f"stagewise: {', '.join(parts)} · {Engine.loads - loads} model load(s) · "
          f"{summary.image_encodes} image encode(s) · {summary.seconds:.1f} s",
          file=sys.stderr)
    if summary.cancelled:
        print(f"stagewise: stopped with {rows} of {job.total} rows in {args.out}; run the same "
              "command again to go on", file=sys.stderr)
        return EXIT_CANCELLED
    return 0


class _Progress:
    """The batch's progress line and its notes on stderr."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.line = ProgressLine(err)
        self._last = 0.0
        self._noted = ""  # the last file a note was written about

    def show(self, progress: BatchProgress) -> None:
        now = time.monotonic()
        if not self.line.tty and now - self._last < PIPE_PROGRESS_S:
            return
        self._last = now
        left = ("" if progress.left_s is None
                else f" · {_duration(progress.left_s)} left")
        self.line.show(f"batch: {progress.done}/{progress.total}{left} · "
                       f"{Path(progress.current).name}")

    def row(self, row: BatchRow) -> None:
        """A note for a bad file (once, whatever its questions) or a failed answer."""
        if row.status == "finished" or (row.status == "bad file" and row.path == self._noted):
            return
        self._noted = row.path
        what = "skipped" if row.status == "bad file" else f"failed ({row.question})"
        self.warn(f"{what}: {Path(row.path).name}: {row.error}")

    def warn(self, message: str) -> None:
        self.line.clear()
        print(f"stagewise: {message}", file=self.err)


def _duration(seconds: float) -> str:
    """``1:02:03`` or ``2:03``."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"
