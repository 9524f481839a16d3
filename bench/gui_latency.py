"""Does the window's event loop stall while an answer streams? Measured side by side.

Usage::

    QT_QPA_PLATFORM=offscreen python bench/gui_latency.py [--model tiny|bench] [--beam 4]
        [--tokens 64] [--seconds 3]
    QT_QPA_PLATFORM=offscreen python bench/gui_latency.py --real-shape qwen2.5-vl-3b \
        [--beam 4] [--tokens 16]

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
The five longest gaps while answering are printed with when they came.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

TARGET_MS = 50.0
REAL_SIZE_TARGET_MS = 16.0
TICK_MS = 5


class GapRecorder:
    """Records the time between ticks of a GUI-thread timer."""

    def __init__(self) -> None:
        self.clock = QElapsedTimer()
        self.gaps: list[float] = []
        self.timer = QTimer(interval=TICK_MS)
        self.timer.timeout.connect(self._tick)
        self._last = 0

    def start(self) -> None:
        self.gaps = []
        self.at: list[float] = []  # seconds since start() at the end of each gap
        self.clock.start()
        self._last = self.clock.nsecsElapsed()
        self.timer.start()

    def stop(self) -> list[float]:
        self.timer.stop()
        return self.gaps

    def _tick(self) -> None:
        now = self.clock.nsecsElapsed()
        self.gaps.append((now - self._last) / 1e6)
        self.at.append(now / 1e9)
        self._last = now


def summary(gaps: list[float]) -> str:
    if not gaps:
        return "no ticks"
    p99 = statistics.quantiles(gaps, n=100)[98] if len(gaps) >= 100 else max(gaps)
    return (f"max {max(gaps):6.1f} ms   p99 {p99:5.1f} ms   median "
            f"{statistics.median(gaps):4.1f} ms   ({len(gaps)} ticks)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("tiny", "bench"), default="tiny")
    parser.add_argument("--real-shape", metavar="NAME",
                        help="a real-shape pair instead (qwen2.5-vl-3b, gemma3-4b, ...)")
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64, help="token budget per stage")
    parser.add_argument("--seconds", type=float, default=3.0, help="idle measurement length")
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
                                                 select=args.select))
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

    recorder.start()
    run_loop(args.seconds)
    idle = list(recorder.stop())

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
    streamed = time.perf_counter()
    recorder.start()
    window.ask(SELF_TEST_QUESTION)
    run_loop(600, window.answer_done)
    busy = list(recorder.stop())
    longest = sorted(zip(busy, recorder.at, strict=True), reverse=True)[:5]
    opener.stop()
    seconds = time.perf_counter() - streamed
    view = done[0] if done else None
    tokens = view.result.timings.generated_tokens if view and view.result else 0
    window.close()

    shown = ", candidates views open" if args.candidates else ""
    print(f"model {args.model}, beam {args.beam}, {args.tokens} tokens per stage{shown}, "
          f"{tokens} tokens generated in {seconds:.1f} s ({tokens / seconds:.0f}/s)")
    print(f"idle window      {summary(idle)}")
    print(f"while answering  {summary(busy)}")
    if longest:
        print("longest gaps while answering: " + ", ".join(
            f"{gap:.0f} ms at {at:.1f} s" for gap, at in longest))
    if idle and busy:
        print(f"longest gap while answering / idle: {max(busy) / max(idle):.2f}")
        verdict = "met" if max(busy) <= target else "MISSED"
        print(f"target: longest gap at most {target:.0f} ms: {verdict}")
    return 0 if busy else 1


if __name__ == "__main__":
    raise SystemExit(main())
