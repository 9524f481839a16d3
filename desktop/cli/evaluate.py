"""``stagewise eval``: accuracy of a single pass and the searches on a question set.

Loads one model, answers every question with every strategy asked (question by
question, side by side) and prints a table, or one JSON object with ``--json``. Progress
goes to stderr. Ctrl+C stops after the question in progress and reports what was done.

A VLMEvalKit benchmark is scored by VLMEvalKit's rules; with ``--grader`` a second, local
model then reads what the rules cannot (MathVista and MMVet need one), after the evaluated
model is closed. ``--csv`` writes VLMEvalKit's score table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from stagewise.desktop.cli.args import (
    CTX_HELP,
    add_judge_arguments,
    add_retrace_arguments,
    add_server_arguments,
    beam_width,
    context_size,
    int_in,
    number_in,
    positive_int,
    retrace_settings,
    server_settings,
    setting,
)
from stagewise.desktop.cli.progress_line import ProgressLine
from stagewise.models.errors import StagewiseError
from stagewise.models.evaluation.results import strategy_names
from stagewise.models.inference.engine_settings import GPU_LAYERS, THREADS, EngineSettings
from stagewise.models.reasoning.search_settings import (
    BEAM,
    MAX_STAGE_TOKENS,
    SEED,
    SearchSettings,
)
from stagewise.models.reasoning.selections import SELECTIONS
from stagewise.models.reasoning.strategies import STRATEGIES

if TYPE_CHECKING:  # the runner loads llama.cpp
    from stagewise.models.evaluation.data import EvalItem
    from stagewise.models.evaluation.grader import GradedReport
    from stagewise.models.evaluation.results import EvalConfig, EvalReport
    from stagewise.models.evaluation.runner import EvalProgress
    from stagewise.models.session import LoadPlan, Session

EXIT_CANCELLED = 130
EXIT_GRADING_FAILED = 1
EVAL_STAGE_TOKENS = 2048
"""The stage budget when none is given: the LLaVA-CoT reference's ``max_new_tokens`` for
each stage's generation (``inference/VLMEvalKit/inference_demo.py``); the window keeps its
own, shorter default."""
EVAL_BEAM = 4
"""The searches' beam width when none is given: the paper's N = 4 (a single pass is one of
the strategies compared, so the window's default of 1 would compare nothing)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``eval`` command to the ``stagewise`` parser."""
    ev = sub.add_parser(
        "eval", help="measure the accuracy of a single pass and the searches on a question set",
        description="Answer every question of a jsonl file with each strategy, side by side "
                    "on one model, and report accuracy with 95% intervals, seconds and "
                    "tokens per question, each search against a single pass, and how often "
                    "the judge picked the right candidate.",
    )
    ev.add_argument("data", type=Path, nargs="?", metavar="DATA",
                    help="a jsonl file of questions: LLaVA-CoT-100k records "
                         "(id, image, conversations) or {image, question, answer(s)}; "
                         "image paths are relative to the file's folder; or a benchmark "
                         ".tsv from VLMEvalKit (MMStar, MMBench, AI2D, ScienceQA, "
                         "HallusionBench; MathVista and MMVet with --grader), scored by "
                         "VLMEvalKit's rules")
    ev.add_argument("--demo", action="store_true",
                    help="instead of DATA: the demo model's held-out test split, answered "
                         "by the demo model unless --model is given")
    ev.add_argument("--limit", type=positive_int, metavar="K",
                    help="only the first K questions (MMBench and other CircularEval "
                         "benchmarks: with all their rotated copies)")
    ev.add_argument("--strategy", type=_strategies, action="append", metavar="NAMES",
                    help=f"what to compare: {', '.join(strategy_names())}; repeat it or "
                         "separate names with commas (default: all of them, in that order); "
                         "greedy is one pass that always takes the likeliest token (the "
                         "baseline every other is compared with), single one sampled pass, "
                         "the others search with --beam and --select")
    ev.add_argument("--beam", type=beam_width, default=EVAL_BEAM, metavar="N",
                    help=f"candidates per segment for the searches, {BEAM.low} to {BEAM.high} "
                         "(default %(default)s, the paper's)")
    ev.add_argument("--select", type=_selections, action="append", metavar="NAMES",
                    help=f"how the searches choose a candidate: {', '.join(SELECTIONS.names())}"
                         "; several (repeated or separated with commas) run each search "
                         "with each (default: each strategy's own)")
    ev.add_argument("--model", type=Path, metavar="GGUF",
                    help="text model GGUF or library id (default: the built-in model; "
                         "with --demo, the demo model)")
    ev.add_argument("--mmproj", type=Path, metavar="GGUF",
                    help="projector GGUF (default: the one beside --model)")
    ev.add_argument("--seed", type=int_in(SEED.low, SEED.high // 2), default=SearchSettings.seed,
                    metavar="N",
                    help="question i is answered with seed + i by every strategy "
                         "(default %(default)s)")
    ev.add_argument("--max-stage-tokens", type=setting(MAX_STAGE_TOKENS),
                    default=EVAL_STAGE_TOKENS, metavar="N",
                    help="token budget per stage (default %(default)s, the LLaVA-CoT "
                         "reference's; the window's is "
                         f"{SearchSettings.max_stage_tokens})")
    ev.add_argument("--ctx", type=context_size, default=EngineSettings.n_ctx, metavar="N",
                    help=CTX_HELP)
    ev.add_argument("--threads", type=setting(THREADS), metavar="N",
                    help="CPU threads (default: auto)")
    ev.add_argument("--gpu-layers", type=setting(GPU_LAYERS),
                    default=EngineSettings.gpu_layers, metavar="N",
                    help="layers to offload to the GPU: -1 all that fit (default), 0 none")
    ev.add_argument("--calibration", type=Path, metavar="DATA",
                    help="retrace: questions to calibrate its cutoff on (jsonl or tsv), never "
                         "the ones evaluated; with --demo, the demo's shipped validation "
                         "puzzles")
    ev.add_argument("--calibration-size", type=positive_int, default=20, metavar="K",
                    help="retrace: calibration questions (default 20)")
    ev.add_argument("--percentile", type=number_in(0.0, 100.0), default=60.0, metavar="P",
                    help="retrace: the cutoff is this percentile of the scorer's reasoning "
                         "scores on the calibration questions (default 60, as the paper)")
    add_judge_arguments(ev)
    add_retrace_arguments(ev)
    add_server_arguments(ev)
    grading = ev.add_argument_group("grading a VLMEvalKit benchmark")
    grading.add_argument("--grader", type=Path, metavar="GGUF",
                         help="a local model (text GGUF with its projector, or library id) "
                              "asked what VLMEvalKit asks GPT: which option or yes/no an "
                              "answer means when matching cannot tell, MathVista's answer, "
                              "MMVet's score; the figures then depend on this model. "
                              "Needed for MathVista and MMVet")
    grading.add_argument("--grader-mmproj", type=Path, metavar="GGUF",
                         help="the grader's projector (default: the one beside --grader)")
    ev.add_argument("--json", action="store_true",
                    help="print one JSON object: the summary and every question's results")
    ev.add_argument("--csv", type=Path, metavar="PATH",
                    help="also write the scores per category as VLMEvalKit's score CSV "
                         "(one block per strategy; MMVet: PATH_fine.csv beside it too)")


def _strategies(text: str) -> list[str]:
    return _names(text, strategy_names(), "strategy")


def _selections(text: str) -> list[str]:
    return _names(text, SELECTIONS.names(), "selection")


def _names(text: str, known: tuple[str, ...], kind: str) -> list[str]:
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in known:
            raise argparse.ArgumentTypeError(f"unknown {kind} {name!r}: use {', '.join(known)}")
    if not names:
        raise argparse.ArgumentTypeError(f"no {kind} named")
    return names


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``stagewise eval``; returns the exit status (errors raise StagewiseError)."""
    # imported here so that `stagewise --help` does not load llama.cpp
    from stagewise.models.evaluation import format_report, make_configs, read_items
    from stagewise.models.evaluation.benchmark_figures import figures
    from stagewise.models.evaluation.benchmarks import benchmark_of
    from stagewise.models.evaluation.grader import plan_grader
    from stagewise.models.evaluation.runner import evaluate
    from stagewise.models.remote.keys import with_secrets
    from stagewise.models.session import Session, plan

    out, err = out or sys.stdout, err or sys.stderr
    data = _data_file(args)
    benchmark = benchmark_of(data) if data.suffix.lower() == ".tsv" else None
    if benchmark is not None and benchmark.needs_grader and args.grader is None:
        raise StagewiseError(f"{benchmark.label} is scored by an LLM in VLMEvalKit: give "
                             "--grader GGUF, a local model to grade its answers")
    if args.grader_mmproj is not None and args.grader is None:
        raise StagewiseError("--grader-mmproj needs --grader")
    _check_csv(args.csv)
    items = read_items(data, args.limit)  # before the model: bad data fails fast
    grader = None if args.grader is None else plan_grader(  # fits? before the long run
        args.grader, args.grader_mmproj, threads=args.threads, gpu_layers=args.gpu_layers)
    names = [n for group in (args.strategy or [list(strategy_names())]) for n in group]
    selects = [n for group in (args.select or []) for n in group]
    if args.scorer:  # retrace's scorer, by its older name
        selects.append(args.scorer)
    try:
        configs = make_configs(names, args.beam, list(dict.fromkeys(selects)) or None)
    except ValueError as error:
        raise StagewiseError(str(error)) from None
    base = SearchSettings(seed=args.seed, max_stage_tokens=args.max_stage_tokens,
                          **retrace_settings(args))
    server = server_settings(args)
    if server is not None:
        model, mmproj = server.describe(), None
        session = Session.connect(*with_secrets(server))
    else:
        model, mmproj = _model_pair(args, err)
        widest = max(configs, key=lambda c: c.beam)
        session = Session(plan(model, mmproj, EngineSettings(
            n_ctx=args.ctx, threads=args.threads, gpu_layers=args.gpu_layers),
            widest.settings(base, base.seed)))
    meter = _Progress(err)
    cancel = threading.Event()
    with _sigint_sets(cancel), session:
        calibration = ""
        if args.retrace_cutoff is None:
            configs, calibration = _calibrated(session, configs, base, args, err)
        report = evaluate(session, items, configs, cancel=cancel,
                          progress=meter.show, base_settings=base, calibration=calibration)
    meter.done()
    if report.status == "cancelled":
        print(f"stopped after {report.done} of {report.total} questions", file=err)
    graded, grading_failed = _graded(report, items, grader, cancel, err)
    scores = figures(graded, items, benchmark)
    if args.json:
        payload = {"data": str(data), "model": str(model),
                   "mmproj": str(mmproj) if mmproj else None, **graded.report.to_json()}
        scores.add_to_json(payload, graded)
        from stagewise.models.storage.export import finite_json

        json.dump(finite_json(payload), out, ensure_ascii=False, indent=2, allow_nan=False)
        out.write("\n")
    else:
        out.write(format_report(graded.report))
        out.write("".join(f"{line}\n" for line in scores.lines()))
    out.flush()
    if args.csv is not None:
        for written in scores.write_csv(args.csv):
            print(f"stagewise: wrote {written}", file=err)
    if grading_failed:
        return EXIT_GRADING_FAILED
    cancelled = report.status == "cancelled" or graded.stopped
    return EXIT_CANCELLED if cancelled else 0


def _check_csv(path: Path | None) -> None:
    """A CSV path that can be written: checked before the run, not after it."""
    if path is None:
        return
    if path.is_dir():
        raise StagewiseError(f"{path}: this is a folder; --csv names a file")
    if not path.parent.is_dir():
        raise StagewiseError(f"{path.parent}: no such folder for --csv")


def _graded(report: EvalReport, items: list[EvalItem], grader: LoadPlan | None,
            cancel: threading.Event, err: TextIO) -> tuple[GradedReport, bool]:
    """The report scored by VLMEvalKit's rules, the grader loaded (after the evaluated
    model is closed) only when some answer needs it; and whether the grader failed (then
    the answers are reported as matching alone reads them, not lost)."""
    from stagewise.models.evaluation.grader import LocalGrader, grade_report
    from stagewise.models.session import Session

    plain = grade_report(report, items, None)
    needed = sum(g.undecided or g.points is not None for g in plain.grades.values())
    if grader is None or not needed:
        return plain, False
    if cancel.is_set():  # stopped during the evaluation: no grader is loaded
        print(f"stagewise: {needed} answers left ungraded count as wrong", file=err)
        return plain, False
    print(f"stagewise: grading {needed} answers with {grader.model.name}", file=err)
    line = ProgressLine(err)

    def show(done: int, total: int) -> None:  # in place, or a line every 10%
        if line.tty or done % max(1, math.ceil(total / 10)) == 0 or done == total:
            line.show(f"grading {done}/{total}")

    try:
        with _sigint_sets(cancel), Session(grader) as session:
            graded = grade_report(report, items, LocalGrader(session.engine),
                                  grader=grader.model.name, cancel=cancel, progress=show)
    except StagewiseError as error:
        line.clear()
        print(f"stagewise: error: grading failed ({error}); the {needed} answers it was for "
              "count as wrong", file=err)
        return plain, True
    line.clear()
    if graded.stopped:
        print(f"stagewise: grading stopped; {graded.stopped} answers left ungraded count as "
              "wrong", file=err)
    return graded, False


def _calibrated(session: Session, configs: tuple[EvalConfig, ...], base: SearchSettings,
                args: argparse.Namespace, err: TextIO) -> tuple[tuple[EvalConfig, ...], str]:
    """Each retracing config's cutoff measured with its selection on calibration questions,
    never the evaluated ones; and how, for the report ("" when nothing was calibrated)."""
    from stagewise.models.evaluation import read_items
    from stagewise.models.inference.images import load_image
    from stagewise.models.library.demo import demo_validation_split
    from stagewise.models.reasoning.strategies.retrace import calibrate

    retracing = [c for c in configs if not STRATEGIES.get(c.strategy).uses_beam]
    if not retracing:
        return configs, ""
    size = args.calibration_size
    if args.calibration is not None:
        questions = [(load_image(i.image), i.question)
                     for i in read_items(args.calibration, size)]
        source = f"{len(questions)} questions of {args.calibration.name}"
    elif args.demo and (split := demo_validation_split()) is not None:
        questions = [(load_image(i.image), i.question) for i in read_items(split, size)]
        source = f"{len(questions)} of the demo's validation puzzles"
    else:
        print("stagewise: retrace's cutoff is not calibrated (give --calibration DATA or "
              "--retrace-cutoff); the selection's default is used", file=err)
        return configs, ""
    print(f"stagewise: calibrating retrace's cutoff on {source}", file=err)
    calibrated, notes = {}, []
    for config in retracing:
        cutoff = calibrate(session, questions, config.settings(base, base.seed),
                           args.percentile)
        calibrated[config.name] = replace(config, cutoff=cutoff)
        notes.append(f"{config.name}: {args.percentile:g}th percentile of {config.select} "
                     f"scores on {source}")
    return tuple(calibrated.get(c.name, c) for c in configs), "; ".join(notes)


def _data_file(args: argparse.Namespace) -> Path:
    from stagewise.models.library.demo import DEMO_TEST, demo_dir, demo_test_split

    if args.demo and args.data is not None:
        raise StagewiseError("give a question file or --demo, not both")
    if not args.demo:
        if args.data is None:
            raise StagewiseError("give a question file (a jsonl) or --demo")
        return args.data
    split = demo_test_split()
    if split is None:
        raise StagewiseError(f"this install has no demo test split ({demo_dir() / DEMO_TEST} "
                             "is missing); pass a jsonl file of questions instead")
    return split


def _model_pair(args: argparse.Namespace, err: TextIO) -> tuple[Path, Path]:
    from stagewise.models.library.defaults import resolve_pair
    from stagewise.models.library.demo import DEMO_MMPROJ, DEMO_MODEL, demo_dir, demo_pair

    if args.demo and args.model is None:
        pair = demo_pair()
        if pair is None:
            raise StagewiseError(
                f"this install has no demo model ({DEMO_MODEL} and {DEMO_MMPROJ} in "
                f"{demo_dir()}); pass --model and --mmproj")
        return pair.model, args.mmproj or pair.mmproj
    resolved = resolve_pair(args.model, args.mmproj)
    if resolved.note:
        print(f"stagewise: {resolved.note}", file=err)
    return resolved.model, resolved.mmproj


@contextlib.contextmanager
def _sigint_sets(cancel: threading.Event) -> Iterator[None]:
    """While active, Ctrl+C sets ``cancel`` instead of raising (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Progress:
    """Evaluation progress: in place on a terminal, else a line every 10% of the questions."""

    def __init__(self, err: TextIO) -> None:
        self.line = ProgressLine(err)

    def show(self, p: EvalProgress) -> None:
        step = max(1, math.ceil(p.total / 10))
        if not self.line.tty and p.done % step and p.done != p.total:
            return
        scores = " · ".join(f"{name} {right}/{n}" for name, (right, n) in p.running.items())
        self.line.show(f"eval {p.done}/{p.total} · {p.elapsed_s / p.done:.2f} s/question · "
                       f"right so far: {scores}")

    def done(self) -> None:
        self.line.clear()
