"""``stagewise ask --compare A B``: one question answered by two configurations.

Each side's progress goes to stderr; then both answers are printed in two columns, stage
by stage, the stage where they first differ marked (or, with ``--json``, one object with
both runs and the divergence). The two runs are kept in the history as a pair.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import textwrap
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from stagewise.desktop.cli.args import server_settings
from stagewise.desktop.cli.ask import (
    EXIT_CANCELLED,
    _warn,
    engine_settings,
    prefix_cache,
    refuse_several,
    run_settings,
    search_settings,
)
from stagewise.desktop.cli.progress_line import ProgressLine
from stagewise.models.compare import (
    SIDES,
    Comparison,
    Configuration,
    parse_configuration,
    run_comparison,
    same_model,
)
from stagewise.models.errors import Cancelled, StagewiseError
from stagewise.models.events import AnswerFinished, Event, RunStarted, SegmentStarted
from stagewise.models.hardware.process_memory import memory_report
from stagewise.models.stages import STAGES

if TYPE_CHECKING:
    from stagewise.models.inference.images import Images, PreparedImage
    from stagewise.models.remote.server import ServerSettings
    from stagewise.models.session import Session
    from stagewise.models.storage.history import HistoryRecorder, RecordedRun

MARK = "◆"
"""Marks the stage where the two answers first differ."""


def configurations(args: argparse.Namespace) -> tuple[Configuration, Configuration]:
    """The two configurations ``--compare`` names, each changing the search the other
    options ask for (``--beam auto`` counts as 1 here: a comparison sets its widths).

    Raises:
        StagewiseError: One is malformed, names an unknown key, or a value out of range;
            a model is named with ``--server``; more than one question is asked.
    """
    if len(args.question or ()) > 1 or args.follow_up:
        raise StagewiseError("--compare answers one question: give one --question, "
                             "without --follow-up")
    base = search_settings(args, 1)
    first, second = (parse_configuration(text, base) for text in args.compare)
    if args.server and (first.model or second.model):
        raise StagewiseError("--compare: a model= key cannot be used with --server (the "
                             "server answers with its own model)")
    return first, second


def run(args: argparse.Namespace, image: Images, question: str,
        images: Sequence[tuple[PreparedImage, Path]]) -> int:
    """Answer ``question`` with both configurations; returns the exit status.

    Args:
        args: ``ask``'s options.
        image: What the question is about (one image, or the several as the session takes
            them).
        question: The question.
        images: Each image with its file, for the history.
    """
    from stagewise.models.remote.keys import with_secrets
    from stagewise.models.session import Session, plan
    from stagewise.models.storage.history import HistoryRecorder

    first, second = configurations(args)
    server = server_settings(args)
    cancel = threading.Event()
    sessions: list[Session] = []
    if server is not None:
        sessions = [Session.connect(*with_secrets(server))] * 2
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.set())
    try:
        if server is None:
            cache = prefix_cache(args)
            for config in (first, second):
                if sessions and same_model(first, second):
                    sessions.append(sessions[0])
                    continue
                model = config.model or args.model
                mmproj = config.mmproj if config.model else args.mmproj
                load = plan(model, mmproj, engine_settings(args), config.search)
                if load.note:
                    print(f"stagewise: {load.note}", file=sys.stderr)
                sessions.append(Session(load, lambda _done: not cancel.is_set(),
                                        prefix_cache=cache))
                if cancel.is_set():
                    raise KeyboardInterrupt
        if len(images) > 1:
            for session in dict.fromkeys(sessions):
                refuse_several(session, len(images))
        recorder = HistoryRecorder(warn=_warn, save=not args.no_history)
        with recorder:
            comparison = _compare(args, sessions, image, question, (first, second), images,
                                  recorder, server, cancel)
    except Cancelled:
        raise KeyboardInterrupt from None
    finally:
        signal.signal(signal.SIGINT, previous)
        for session in dict.fromkeys(sessions):
            session.close()
    if args.json:
        from stagewise.models.storage.export import finite_json

        payload = comparison.to_json()
        for entry, session in zip(payload["runs"], sessions, strict=True):
            entry["memory"] = memory_report(session.plan.fit.need if session.plan else None)
        json.dump(finite_json(payload), sys.stdout, ensure_ascii=False, indent=2,
                  allow_nan=False)
        sys.stdout.write("\n")
    else:
        print_columns(comparison, sys.stdout)
    cancelled = any(r.status == "cancelled" for r in comparison.results)
    return EXIT_CANCELLED if cancelled else 0


def _compare(args: argparse.Namespace, sessions: Sequence[Session], image: Images,
             question: str, configs: tuple[Configuration, Configuration],
             images: Sequence[tuple[PreparedImage, Path]], recorder: HistoryRecorder,
             server: ServerSettings | None, cancel: threading.Event) -> Comparison:
    """Run the comparison, each side kept in the history as it answers, then linked."""
    records: list[RecordedRun] = []
    line = ProgressLine(sys.stderr)
    (first_image, first_file), *more = images

    def on_event(side: int, event: Event) -> None:
        if isinstance(event, RunStarted):
            config = configs[side]
            session = sessions[side]
            model = session.served_by if session.plan is None else session.plan.model.name
            settings = run_settings(args, config.search, server)
            records.append(recorder.start(
                first_image, first_file, first_file.name, question, model, settings,
                more_images=[(m, path, path.name) for m, path in more]))
            print(f"stagewise: {SIDES[side]} ({config.text or 'as asked'}) on {model}",
                  file=sys.stderr)
        records[side].add(event)
        if isinstance(event, SegmentStarted) and line.tty:
            what = event.unit.title if event.unit else "answer"
            line.show(f"{SIDES[side]}: {what}, {event.n_candidates} candidate(s)")
        if isinstance(event, AnswerFinished):
            line.clear()
            t = event.result.timings
            print(f"stagewise: {SIDES[side]} {event.result.status} in {t.total_s:.2f} s · "
                  f"{t.generated_tokens} tokens · {t.image_encodes} image encode(s)",
                  file=sys.stderr)

    try:
        comparison = run_comparison(sessions, image, question, configs, cancel, on_event)
    except StagewiseError as error:
        for record in records:
            record.fail(str(error))
        raise
    if len(records) == 2:
        recorder.link_comparison(*records)
    return comparison


def print_columns(comparison: Comparison, out: TextIO, width: int | None = None) -> None:
    """Both answers in two columns, stage by stage; the diverging stage marked."""
    width = width or shutil.get_terminal_size((100, 24)).columns
    column = max(20, (width - 3) // 2)
    diverged = comparison.divergence
    a, b = comparison.configurations
    out.write(f"# {comparison.question}\n\n")
    out.write(_row(f"A: {a.text or 'as asked'}", f"B: {b.text or 'as asked'}", column))
    out.write(_row(_search(comparison, 0), _search(comparison, 1), column))
    for stage in STAGES:
        mark = f" {MARK} diverged here" if stage is diverged.stage else ""
        out.write(f"\n== {stage.title} =={mark}\n")
        out.write(_row(comparison.results[0].stages.get(stage, ""),
                       comparison.results[1].stages.get(stage, ""), column))
    out.write(f"\n{MARK} {diverged.describe()}\n" if not diverged.same
              else f"\n{diverged.describe()}\n")
    out.flush()


def _search(comparison: Comparison, side: int) -> str:
    r = comparison.results[side]
    model = comparison.models[side]
    return f"{model}: {r.strategy}, beam {r.beam}, {r.select or 'default'} ({r.status})"


def _row(left: str, right: str, column: int) -> str:
    """Two texts side by side, each wrapped to ``column`` characters."""
    lines_a = _wrap(left, column)
    lines_b = _wrap(right, column)
    rows = max(len(lines_a), len(lines_b))
    lines_a += [""] * (rows - len(lines_a))
    lines_b += [""] * (rows - len(lines_b))
    return "".join(f"{x:<{column}} │ {y}".rstrip() + "\n" for x, y in zip(lines_a, lines_b,
                                                                         strict=True))


def _wrap(text: str, column: int) -> list[str]:
    lines: list[str] = []
    for paragraph in text.strip().split("\n"):
        lines += textwrap.wrap(paragraph, column) or [""]
    return lines or [""]
