"""Does the window's event loop stall while an answer streams? Measured side by side.

Usage::

    QT_QPA_PLATFORM=offscreen python bench/gui_latency.py [--model tiny|bench] [--beam 4]
        [--tokens 64] [--seconds 3]
    QT_QPA_PLATFORM=offscreen python bench/gui_latency.py --real-shape qwen2.5-vl-3b \
        [--beam 4] [--tokens 16] [--select logprob] [--repeat 5]

A GUI-thread timer asks to tick every 5 ms; every gap between two ticks is recorded,
first with the window idle for ``--seconds``, then while the real window answers a question
with the real engine (beam search, ``--select``: the judge by default, a random-weight
model that always spends its whole token budget, the beam as set: "auto" is off). The
longest gap is what a user feels as a stall; the target is under 50 ms for the small
models, and at most 16 ms (one frame at 60 Hz) for a real-size model (``--real-shape``: the
catalogue's model at its real shape, random weights,
:mod:`stagewise.models.recipes.real_shape`), where llama.cpp keeps the engine thread busy
for seconds at a time. The tiny model streams the most tokens per second, which is the
hardest case for the GUI thread; the bench model keeps the engine thread busier for longer.
The five longest gaps while answering are printed with when they came and where the
window's thread spent them (running, waiting for a core, or neither: blocked or asleep;
Linux's per-thread scheduler statistics), with Python's garbage collections. ``--repeat``
asks the same question again in the same window, the idle window measured before each.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

TARGET_MS = 50.0
REAL_SIZE_TARGET_MS = 16.0
TICK_MS = 5


SCHEDSTAT = Path("/proc/thread-self/schedstat")


def thread_schedstat() -> tuple[int, int]:
    """This thread's nanoseconds on a core and waiting for one (Linux; zeros elsewhere)."""
    try:
        running, waiting, _ = SCHEDSTAT.read_text().split()
    except OSError:
        return 0, 0
    return int(running), int(waiting)


class GapRecorder:
    """Records the time between ticks of a GUI-thread timer, and where each gap went:
    the window's thread running, waiting for a core, or neither (blocked: the GIL, a lock,
    or simply asleep until the tick was due)."""

    def __init__(self) -> None:
        self.clock = QElapsedTimer()
        self.gaps: list[float] = []
        self.at: list[float] = []  # seconds since start() at the end of each gap
        self.spent: list[tuple[float, float]] = []  # ms running, ms waiting for a core
        self.timer = QTimer(interval=TICK_MS)
        self.timer.timeout.connect(self._tick)
        self._last = 0
        self._last_sched = (0, 0)

    def start(self) -> None:
        self.gaps, self.at, self.spent = [], [], []
        self.clock.start()
        self._last = self.clock.nsecsElapsed()
        self._last_sched = thread_schedstat()
        self.timer.start()

    def stop(self) -> list[float]:
        self.timer.stop()
        return self.gaps

    def _tick(self) -> None:
        now = self.clock.nsecsElapsed()
        sched = thread_schedstat()
        self.gaps.append((now - self._last) / 1e6)
        self.at.append(now / 1e9)
        self.spent.append(((sched[0] - self._last_sched[0]) / 1e6,
                           (sched[1] - self._last_sched[1]) / 1e6))
        self._last = now
        self._last_sched = sched


class CollectionRecorder:
    """Records Python's garbage collections: when, how long, which generation, which thread
    (a collection holds the GIL, so the window waits for it whichever thread runs it)."""

    def __init__(self, clock: QElapsedTimer) -> None:
        self.clock = clock
        self.runs: list[tuple[float, float, int, str]] = []  # at (s), ms, generation, thread
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._began = now
            return
        self.runs.append((self.clock.nsecsElapsed() / 1e9, (now - self._began) * 1e3,
                          info["generation"], threading.current_thread().name))


def time_renders(window_class: type) -> list[float]:
    """Record the window's thread's CPU milliseconds in each re-render of the stage cards
    (``MainWindow._render``: the cards and the status bar, one event-loop turn); wraps the
    class's method, so call it before the window is made."""
    spent: list[float] = []
    render = window_class._render

    def timed(window: object) -> None:
        began = time.thread_time()
        try:
            render(window)
        finally:
            spent.append((time.thread_time() - began) * 1e3)

    window_class._render = timed
    return spent


def timed_collection() -> float:
    """Milliseconds one full collection takes now."""
    began = time.perf_counter()
    gc.collect()
    return (time.perf_counter() - began) * 1e3


def summary(gaps: list[float]) -> str:
    if not gaps:
        return "no ticks"
    p99 = statistics.quantiles(gaps, n=100)[98] if len(gaps) >= 100 else max(gaps)
    return (f"max {max(gaps):6.1f} ms   p99 {p99:5.1f} ms   median "
            f"{statistics.median(gaps):4.1f} ms   ({len(gaps)} ticks)")


@dataclass(frozen=True)
class Answer:
    """One answer's measurements."""

    idle: list[float]  # gaps (ms) in the idle window just before
    gaps: list[tuple[float, float, tuple[float, float]]]  # gap, at (s), (running, waiting)
    collections: list[tuple[float, float, int, str]]
    renders: list[float]  # the window's CPU (ms) in each re-render of the cards
    seconds: float
    tokens: int

    @property
    def busy(self) -> list[float]:
        """The gaps (ms) while answering."""
        return [gap for gap, _, _ in self.gaps]


def report(number: int, run: Answer) -> None:
    """Print one answer's longest gaps, where they went, and its garbage collections."""
    print(f"answer {number}: {run.tokens} tokens generated in {run.seconds:.1f} s "
          f"({run.tokens / run.seconds:.0f}/s)")
    print(f"  idle window      {summary(run.idle)}")
    print(f"  while answering  {summary(run.busy)}")
    running = sum(spent[0] for _, _, spent in run.gaps)
    waiting = sum(spent[1] for _, _, spent in run.gaps)
    print(f"  the window's thread ran {running:.0f} ms of the answer's {run.seconds:.1f} s "
          f"({running / run.seconds / 10:.1f}% of a core) and waited {waiting:.0f} ms for a core")
    if run.renders:
        dearest = sorted(run.renders, reverse=True)[:4]
        print(f"  {len(run.renders)} re-renders of the cards, {sum(run.renders):.0f} ms of the "
              f"window's CPU; the dearest: {', '.join(f'{ms:.1f}' for ms in dearest)} ms")
    longest = sorted(run.gaps, reverse=True)[:5]
    if longest:
        print("  longest gaps while answering (the window's thread running / waiting for a "
              "core / blocked or asleep):")
        for gap, at, (running, waiting) in longest:
            print(f"    {gap:5.1f} ms at {at:5.1f} s: {running:5.1f} / {waiting:5.1f} / "
                  f"{gap - running - waiting:5.1f} ms")
    if run.collections:
        slowest = sorted(run.collections, key=lambda c: c[1], reverse=True)[:3]
        print(f"  garbage collections: {len(run.collections)}, "
              f"{sum(c[1] for c in run.collections):.0f} ms in all; the longest: " + ", ".join(
                  f"{ms:.1f} ms (generation {generation}, {thread}) at {at:.1f} s"
                  for at, ms, generation, thread in slowest))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("tiny", "bench"), default="tiny")
    parser.add_argument("--real-shape", metavar="NAME",
                        help="a real-shape pair instead (qwen2.5-vl-3b, gemma3-4b, ...)")
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64, help="token budget per stage")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="idle measurement length (before each answer)")
    parser.add_argument("--threads", type=int, default=None,
                        help="llama.cpp's threads (default: the app's, every core here)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="answers to measure, one after another in the same window")
    parser.add_argument("--select", default="judge",
                        help="the selection (judge: the dearest for the window's thread)")
    parser.add_argument("--candidates", action="store_true",
                        help="open every card's candidates view as soon as it has candidates")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="stagewise-bench-"))
    os.environ["STAGEWISE_DATA_DIR"] = str(folder / "data")
    os.environ["STAGEWISE_CONFIG_DIR"] = str(folder / "config")


    from stagewise.desktop.app import SELF_TEST_QUESTION, example_image
    from stagewise.desktop.main_window import MainWindow
    from stagewise.models.build.tiny_vlm import BENCH, TINY, write_tiny_pair
    from stagewise.models.inference.engine_settings import EngineSettings
    from stagewise.models.reasoning.search_settings import SearchSettings
    from stagewise.models.stages import STAGES
    from stagewise.models.storage.app_settings import AppSettings

    if args.real_shape:
        from stagewise.models.recipes.real_shape import SCALED, SHAPES, build_pair

        pair = build_pair({**SHAPES, **SCALED}[args.real_shape])
        args.model = args.real_shape
    else:
        pair = write_tiny_pair(folder / "model", TINY if args.model == "tiny" else BENCH)
    target = REAL_SIZE_TARGET_MS if args.real_shape else TARGET_MS
    app = QApplication.instance() or QApplication(sys.argv[:1])  # noqa: F841 (kept alive)
    settings = AppSettings(model=pair.model, mmproj=pair.mmproj, auto_beam=False,
                           search=SearchSettings(beam=args.beam, max_stage_tokens=args.tokens,
                                                 select=args.select),
                           engine=EngineSettings(threads=args.threads))
    renders = time_renders(MainWindow)
    window = MainWindow(settings)
    window.show()
    recorder = GapRecorder()

    def run_loop(seconds: float, until: object = None) -> None:
        """Run the real event loop for ``seconds``, or until the signal ``until`` fires."""
        loop = QEventLoop()
        QTimer.singleShot(round(seconds * 1000), loop.quit)
        if until is not None:
            until.connect(loop.quit)
        loop.exec()

    if window.loaded is None:
        run_loop(600, window.host.worker.model_loaded)
    window.image_pane.open_file(example_image())

    done: list[object] = []
    window.answer_done.connect(done.append)
    opener = QTimer(interval=20)
    if args.candidates:
        def open_candidates() -> None:
            for stage in STAGES:
                card = window.reasoning.card(stage)
                if card.candidates_button.isEnabled() and not card.candidates_button.isChecked():
                    card.set_candidates_open(True)
        opener.timeout.connect(open_candidates)
        opener.start()

    def answer() -> Answer:
        """Measure the idle window, then one answer (the same question each time)."""
        recorder.start()
        run_loop(args.seconds)
        idle = list(recorder.stop())
        done.clear()
        renders.clear()
        streamed = time.perf_counter()
        recorder.start()
        collections = CollectionRecorder(recorder.clock)
        gc.callbacks.append(collections)
        window.ask(SELF_TEST_QUESTION)
        run_loop(600, window.answer_done)
        busy = list(recorder.stop())
        gc.callbacks.remove(collections)
        view = done[0] if done else None
        return Answer(idle, list(zip(busy, recorder.at, recorder.spent, strict=True)),
                      collections.runs, list(renders), time.perf_counter() - streamed,
                      view.result.timings.generated_tokens if view and view.result else 0)

    answers = [answer() for _ in range(args.repeat)]
    opener.stop()
    frozen = gc.get_freeze_count()
    frozen_ms = timed_collection()
    gc.unfreeze()
    whole_ms = timed_collection()
    window.close()

    shown = ", candidates views open" if args.candidates else ""
    print(f"model {args.model}, beam {args.beam}, {args.tokens} tokens per stage{shown}, "
          f"{len(answers)} answer(s)")
    for number, run in enumerate(answers, 1):
        report(number, run)
    print(f"a full collection after the answers: {frozen_ms:.1f} ms with the {frozen} objects "
          f"alive at the model's load frozen (stagewise.desktop.heap), {whole_ms:.1f} ms "
          f"without: {whole_ms / max(frozen_ms, 0.01):.0f}x")
    busy = [gap for run in answers for gap in run.busy]
    idle = [gap for run in answers for gap in run.idle]
    if idle and busy:
        print(f"longest gap while answering / idle: {max(busy) / max(idle):.2f}")
        met = sum(bool(run.busy) and max(run.busy) <= target for run in answers)
        verdict = "met" if met == len(answers) else "MISSED"
        busiest = ", ".join(f"{max(run.busy):.1f}" for run in answers if run.busy)
        idlest = ", ".join(f"{max(run.idle):.1f}" for run in answers if run.idle)
        print(f"target: longest gap at most {target:.0f} ms: {verdict}, met in {met} of "
              f"{len(answers)} answers (longest gaps {busiest} ms; the idle window's before "
              f"each {idlest} ms)")
    return 0 if busy else 1


if __name__ == "__main__":
    raise SystemExit(main())
