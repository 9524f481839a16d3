"""``stagewise ask``: questions about an image (or several at once) in the terminal.

It streams the four stages, or prints one JSON object with ``--json``. With
``--compare A B`` one question is answered by two configurations side by side
(:mod:`stagewise.desktop.cli.compare`).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from stagewise.desktop.cli.args import (
    add_answer_arguments,
    add_server_arguments,
    checked_question,
    image_tokens_of,
    question_file,
    retrace_settings,
    selection_of,
    server_settings,
)
from stagewise.desktop.cli.progress_line import ProgressLine
from stagewise.models.errors import Cancelled, StagewiseError
from stagewise.models.events import (
    AnswerFinished,
    Event,
    JudgeVerdict,
    JudgingStarted,
    PromptEvaluated,
    Retraced,
    RunWarning,
    SearchResult,
    SegmentChosen,
    SegmentStarted,
    Timings,
    TokenStreamed,
)
from stagewise.models.hardware.process_memory import memory_report
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.sampling_settings import SamplingSettings
from stagewise.models.reasoning.auto_beam import AUTO_BEAM, AutoBeam
from stagewise.models.reasoning.auto_beam import WIDTHS as AUTO_WIDTHS
from stagewise.models.reasoning.confidence import confidence_of
from stagewise.models.reasoning.conversation import Turn, turns_of
from stagewise.models.reasoning.run_view import RunView
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.reasoning.strategies import strategy
from stagewise.models.stages import StageParser

if TYPE_CHECKING:
    from stagewise.models.inference.images import Images
    from stagewise.models.inference.prefix_cache import PrefixCache
    from stagewise.models.remote.server import ServerSettings
    from stagewise.models.session import Session
    from stagewise.models.storage.history import RecordedRun, RunSettings

EXIT_CANCELLED = 130


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``ask`` command to the ``stagewise`` parser."""
    ask = sub.add_parser("ask", help="answer questions about an image (or several at once)")
    ask.add_argument("--image", required=True, type=Path, action="append",
                     help="the image file; give it again to ask about several images at "
                          "once (each encoded once, in the order given), for a model "
                          "whose chat template takes several")
    ask.add_argument("--question", action="append",
                     help="the question; give it again for more questions about the same "
                          "image, answered in turn without encoding the image again")
    ask.add_argument("--question-file", action="append", dest="question", type=question_file,
                     metavar="FILE",
                     help="a question read from a UTF-8 text file (- for standard input), "
                          "for questions longer than a command line takes; may be given "
                          "with or instead of --question, in the order asked")
    ask.add_argument("--follow-up", action="store_true",
                     help="ask each --question after the first as a follow-up: the earlier "
                          "questions and their answers (conclusions) go into its prompt")
    add_answer_arguments(ask, auto_beam=True)
    ask.add_argument("--json", action="store_true", help="print one JSON object at the end")
    ask.add_argument("--compare", nargs=2, metavar=("A", "B"),
                     help="answer the question twice, with configurations A and B, and "
                          "print both in two columns stage by stage, the stage where they "
                          "first differ marked; each is key=value pairs separated by commas "
                          "(beam, select, strategy, seed, max_stage_tokens, temperature, "
                          "top_p, max_judge_tokens, judge_prompt, retrace_cutoff, "
                          "scorer_model, model, mmproj), changing the other options' search: "
                          "--compare \"beam=1\" \"beam=4,select=verdict\"")
    ask.add_argument("--no-prefix-cache", action="store_true",
                     help="neither read nor keep the encoded image in the cache of encoded "
                          "images (which the window shares; its size is the window's "
                          "Preferences → Encoded images kept)")
    add_server_arguments(ask)


def search_settings(args: argparse.Namespace, beam: int | None = None) -> SearchSettings:
    """The search ``ask``'s options ask for; with ``--beam auto``, of width ``beam`` (None:
    auto's widest, what a load is planned for)."""
    if args.beam != AUTO_BEAM:
        beam = args.beam
    return SearchSettings(
        strategy=args.strategy, beam=beam or max(AUTO_WIDTHS), select=selection_of(args),
        seed=args.seed,
        max_stage_tokens=args.max_stage_tokens,
        sampling=SamplingSettings(temperature=args.temperature, top_p=args.top_p),
        **retrace_settings(args),
    )


def engine_settings(args: argparse.Namespace) -> EngineSettings:
    """The load ``ask``'s options ask for, before :func:`~stagewise.models.session.plan`
    fits it to the machine (``--image-tokens`` as given: :func:`run` first fills it in
    from the model's kept value)."""
    return EngineSettings(n_ctx=args.ctx, threads=args.threads, gpu_layers=args.gpu_layers,
                          flash_attn=args.flash_attn, image_tokens=args.image_tokens or 0)


def run_settings(args: argparse.Namespace, search: SearchSettings,
                 server: ServerSettings | None) -> RunSettings:
    """What one of ``ask``'s questions is asked with, as the history keeps it: ``search`` is
    the search it runs (with ``--beam auto``, of the width auto chose for it)."""
    from stagewise.models.storage.history import RunSettings

    return RunSettings(search, engine_settings(args), server, model=args.model,
                       mmproj=args.mmproj, auto_beam=args.beam == AUTO_BEAM)


def run(args: argparse.Namespace) -> int:
    """Run ``stagewise ask``; returns the exit status (errors raise StagewiseError)."""
    # imported here so that `stagewise --help` does not load llama.cpp
    from stagewise.models.inference.images import load_image
    from stagewise.models.remote.keys import with_secrets
    from stagewise.models.session import Session, plan
    from stagewise.models.storage.history import HistoryRecorder

    if not args.question:
        raise StagewiseError("no question: give one with --question or --question-file")
    questions = [checked_question(q) for q in args.question]
    if args.compare:
        from stagewise.desktop.cli import compare

        compare.configurations(args)  # a bad configuration fails before any image is read
    loaded = [load_image(path) for path in args.image]  # a bad image fails fast
    image = loaded[0] if len(loaded) == 1 else tuple(loaded)
    args.image_tokens = image_tokens_of(args)
    if args.compare:
        return compare.run(args, image, questions[0], list(zip(loaded, args.image,
                                                                strict=True)))
    settings = search_settings(args)
    server = server_settings(args)
    cancel = threading.Event()
    if server is not None:  # Ctrl+C while connecting interrupts the wait for the server
        session = Session.connect(*with_secrets(server))
        model = session.served_by
    # from here Ctrl+C stops ask, also while the model loads: a KeyboardInterrupt raised
    # inside one of llama.cpp's callbacks into Python would be printed and lost
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.set())
    if server is None:
        try:
            load = plan(args.model, args.mmproj, engine_settings(args), settings)
            if load.note:
                print(f"stagewise: {load.note}", file=sys.stderr)
            session = Session(load, lambda _done: not cancel.is_set(),
                              prefix_cache=prefix_cache(args))
            model = load.model.name
        except BaseException as error:
            signal.signal(signal.SIGINT, previous)
            if isinstance(error, Cancelled):
                raise KeyboardInterrupt from None  # one line, exit 130, as any Ctrl+C
            raise
        if cancel.is_set():  # pressed after the load's last progress report
            signal.signal(signal.SIGINT, previous)
            session.close()
            raise KeyboardInterrupt
    if note := image_tokens_note(args, session):
        print(f"stagewise: {note}", file=sys.stderr)
    if len(loaded) > 1:
        refuse_several(session, len(loaded), previous)
    results: list[SearchResult] = []
    thread: int | None = None  # the history's run the next question follows
    auto = AutoBeam() if args.beam == AUTO_BEAM else None
    recorder = HistoryRecorder(warn=_warn, save=not args.no_history)
    try:
        with session, recorder:
            if auto is not None:  # auto's first pass needs no second model; its later do
                session.verifier(session.settled(settings))
            for number, question in enumerate(questions, 1):
                if auto is not None:
                    choice = auto.choice()
                    settings = search_settings(args, choice.beam)
                    if len(questions) > 1:  # one question is always one single pass
                        print(f"stagewise: {choice.reason}", file=sys.stderr)
                earlier = turns_of(results) if args.follow_up else ()
                if len(questions) > 1 and not args.json:
                    print(_heading(number, question, args.follow_up, len(earlier)),
                          file=sys.stdout)
                record = recorder.start(loaded[0], args.image[0], args.image[0].name, question,
                                        model, run_settings(args, settings, server),
                                        thread=thread, follow_up=bool(earlier),
                                        more_images=[(m, path, path.name) for m, path in
                                                     zip(loaded[1:], args.image[1:],
                                                         strict=True)])
                results.append(_answer(args, session, image, question, settings, record,
                                       cancel, earlier))
                if auto is not None and number < len(questions):
                    auto.observe(results[-1], session.engine)
                thread = record.run_id if record.saved else thread
                if results[-1].status == "cancelled":
                    break
    finally:
        signal.signal(signal.SIGINT, previous)
    if args.json:
        from stagewise.models.storage.export import confidence_json, finite_json

        memory = memory_report(session.plan.fit.need if session.plan else None)
        payload = [finite_json({**r.to_json(), "confidence": confidence_json(r),
                                "cautions": RunView.from_result(r).cautions(),
                                "memory": memory})  # JSON has no -Infinity
                   for r in results]
        json.dump(payload[0] if len(args.question) == 1 else payload, sys.stdout,
                  ensure_ascii=False, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    return EXIT_CANCELLED if results[-1].status == "cancelled" else 0


def image_tokens_note(args: argparse.Namespace, session: Session) -> str | None:
    """Why ``--image-tokens`` changes nothing for this session's model, if it does not."""
    if not args.image_tokens:
        return None
    if session.engine is None:
        return f"--image-tokens is for a model in this process; {session.served_by} sizes " \
               "images itself"
    if not session.engine.adapter.image_tokens_follow_size:
        return (f"{session.engine.model_path.name} takes every picture at one size, so "
                "--image-tokens changes nothing")
    return None


def refuse_several(session: Session, count: int, previous: object = None) -> None:
    """Refuse several images, before anything is recorded, where the session's model takes
    one (closing the session, and putting back the Ctrl+C handler ``previous``).

    Raises:
        StagewiseError: It takes one; one line.
    """
    try:
        session.check_images(count)
    except StagewiseError:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        session.close()
        raise


def prefix_cache(args: argparse.Namespace) -> PrefixCache | None:
    """The cache of encoded images ``ask`` reads and writes: the window's, with the size
    its settings give it (None with ``--no-prefix-cache``, or when the settings keep none).
    A second ``ask`` about the same image with the same model reads the image from it
    instead of encoding it."""
    from stagewise.models.inference.prefix_cache import PrefixCache
    from stagewise.models.storage.app_settings import load_settings

    if args.no_prefix_cache:
        return None
    return PrefixCache.with_cap_mib(load_settings().prefix_cache_mib)


def _warn(message: str) -> None:
    """A problem with the history: one line, and the answer goes on."""
    print(f"stagewise: {message}", file=sys.stderr)


def _heading(number: int, question: str, follow_up: bool, earlier: int) -> str:
    """The line before each of several questions' answers."""
    if not follow_up or number == 1:
        return f"\n# {question}"
    context = f"{earlier} earlier question{'s' if earlier != 1 else ''} and answer" + (
        "s" if earlier != 1 else "")
    return f"\n# Follow-up {number} ({context} in context): {question}"


def _context_of(session: Session, args: argparse.Namespace) -> int | str:
    """The context the session's engine was made with (``--ctx`` for a server)."""
    if session.plan is not None:
        return session.plan.engine.n_ctx
    return args.ctx or "auto"


def _answer(args: argparse.Namespace, session: Session, image: Images, question: str,
            settings: SearchSettings, record: RecordedRun, cancel: threading.Event,
            earlier: Sequence[Turn] = ()) -> SearchResult:
    """One question: streamed to the terminal (unless --json) and kept in the history."""
    printer = None if args.json else _StagePrinter(
        sys.stdout, sys.stderr, settings.beam, final_only=strategy(args.strategy).final_only)
    result = None
    try:
        for event in session.ask(image, question, settings, cancel, earlier=earlier):
            if isinstance(event, PromptEvaluated) and event.dropped_turns:
                print(f"stagewise: the oldest {event.dropped_turns} of the earlier questions "
                      "were left out of this follow-up so that its answer fits the context "
                      f"({_context_of(session, args)} tokens; --ctx raises it)",
                      file=sys.stderr)
            if isinstance(event, RunWarning):  # known as it starts: said before the answer
                print(f"stagewise: warning: {event.text}", file=sys.stderr)
            record.add(event)
            if printer:
                printer.show(event)
            if isinstance(event, AnswerFinished):
                result = event.result
    except StagewiseError as error:
        record.fail(str(error))
        raise
    assert result is not None
    return result


class _StagePrinter:
    """Streams the chosen text under stage headers; progress goes to stderr."""

    def __init__(self, out: TextIO, err: TextIO, beam: int, *, final_only: bool = False) -> None:
        """``final_only``: print the answer once it is chosen (retrace samples many
        candidate sets per stage and picks the path at the end)."""
        self.out, self.err, self.beam = out, err, beam
        self.final_only = final_only
        self.parser = StageParser()
        self.stage = None
        self.held = ""
        self.tokens = 0
        self.line = ProgressLine(err)  # shown on a terminal only

    def show(self, event: Event) -> None:
        if self.final_only:
            self._show_final_only(event)
        elif isinstance(event, SegmentStarted):
            self.tokens = 0
            self._write(event.prefix)
            if self.beam > 1:
                what = event.unit.title if event.unit else "answer"
                self._progress(f"{what}: sampling {event.n_candidates} candidates")
        elif isinstance(event, TokenStreamed):
            self.tokens += 1
            if self.beam == 1:
                self._write(event.text)
            elif self.line.tty and self.tokens % 8 == 0:
                self._progress(f"sampling: {self.tokens} tokens")
        elif isinstance(event, JudgingStarted):
            self._progress(f"judging: {event.n_comparisons} comparisons")
        elif isinstance(event, JudgeVerdict):
            v = event.verdict
            self._progress(f"judge: {v.first} vs {v.second} -> {v.winner}")
        elif isinstance(event, SegmentChosen) and self.beam > 1:
            self._write(event.text)
            self._note(f"[chose candidate {event.candidate + 1} of {self.beam}]")
        elif isinstance(event, AnswerFinished):
            self._finish(event.result)

    def _show_final_only(self, event: Event) -> None:
        if isinstance(event, SegmentStarted):
            what = event.unit.title if event.unit else "answer"
            self._progress(f"{what}: sampling {event.n_candidates} candidates")
        elif isinstance(event, Retraced):
            self._note(f"[retrace: second-best reasoning scored {event.second_best:.3g}, "
                       f"not above the cutoff {event.cutoff:.3g}]")
        elif isinstance(event, AnswerFinished):
            self._write(event.result.answer_text)
            self._finish(event.result)

    def _write(self, text: str) -> None:
        for delta in self.parser.feed(text):
            self._emit(delta.stage, delta.text)
        self.out.flush()

    def _emit(self, stage: object, text: str) -> None:
        """Write a stage's text; blank space at its end waits until more of it comes."""
        if stage is None:
            return
        if stage is not self.stage:
            self.stage, self.held = stage, ""
            self.out.write(f"\n== {stage.title} ==\n")
            text = text.lstrip()
        text = self.held + text
        body = text.rstrip()
        self.held = text[len(body):]
        self.out.write(body)

    def _note(self, text: str) -> None:
        self.line.clear()
        self.err.write(f"\n{text}\n")
        self.err.flush()

    def _progress(self, text: str) -> None:
        if self.line.tty:
            self.line.show(text)

    def _finish(self, result: SearchResult) -> None:
        for delta in self.parser.finish():
            self._emit(delta.stage, delta.text)
        self.out.write("\n")
        self.out.flush()
        t = result.timings
        self.line.clear()
        state = "cancelled" if result.status == "cancelled" else "done"
        self.err.write(
            f"{state} in {t.total_s:.2f} s · {t.generated_tokens} tokens generated · "
            f"{t.tokens_per_s:.1f} tok/s · {t.image_encodes} image encode(s)"
            f"{_prefix_note(t)}\n"
        )
        for line in _trust_lines(result):
            self.err.write(f"{line}\n")
        self.err.flush()



def _trust_lines(result: SearchResult) -> list[str]:
    """After the answer: how sure the search was of it, then its doubts (the warnings were
    said as the run started)."""
    lines = []
    found = confidence_of(result)
    if found is not None:
        lines.append(f"confidence: {found.summary()}")
    view = RunView.from_result(result)
    lines += [f"stagewise: doubt: {doubt}" for doubt in view.doubts()]
    return lines


def _prefix_note(t: Timings) -> str:
    """Where the image came from, when it was not encoded for this answer."""
    if t.prefix_from == "cache":
        return f" · image from the cache ({t.cache_load_s:.2f} s)"
    if t.prefix_from == "encoded":
        return f" ({t.encode_s:.2f} s)"
    return ""
