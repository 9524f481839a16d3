"""The engine thread, and llama.cpp's compute threads it starts, run below the window.

``bench/gui_latency.py --real-shape`` measures what this buys (the window's longest stall
while a 3B model answers); here the real window answers with the tiny model through real
llama.cpp, and the threads of this very process are read from ``/proc``.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from stagewise.desktop.threads import BACKGROUND_NICENESS, SWITCH_INTERVAL_S
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.storage.app_settings import AppSettings

ANSWER_MS = 180_000

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="a thread's own nice value is Linux's")


def threads_now() -> dict[int, tuple[str, int]]:
    """This process's threads: id -> (name, nice)."""
    out = {}
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # it ended meanwhile
            continue
        name = stat[stat.index("(") + 1: stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(task.name)] = (name, int(fields[16]))  # field 19 of stat: nice
    return out


def test_the_engine_and_its_compute_threads_run_below_the_window(qtbot, tiny_pair,
                                                                 make_window):
    main_nice = os.getpriority(os.PRIO_PROCESS, 0)
    before = set(threads_now())
    settings = AppSettings(model=tiny_pair.model, mmproj=tiny_pair.mmproj, auto_beam=False,
                           search=SearchSettings(beam=2, max_stage_tokens=8, select="logprob"),
                           engine=EngineSettings(threads=2, n_ctx=4096))
    window = make_window(settings)
    window.image_pane.open_file(Path(__file__).parents[2] / "models" / "data" / "example.png")
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS):
        window.ask("How many red circles?")
    now = threads_now()

    lowered = min(19, main_nice + BACKGROUND_NICENESS)
    # the engine thread, and llama.cpp's compute pool (OpenMP's threads: with two threads one
    # besides the engine's own), which it created and which took its name and its priority
    engine = {tid: nice for tid, (name, nice) in now.items()
              if name.startswith("stagewise-engin")}
    assert len(engine) >= settings.engine.threads, now
    assert set(engine.values()) == {lowered}, now
    assert all(tid not in before for tid in engine)
    assert now[threading.main_thread().native_id][1] == main_nice  # the window's: as it was
    assert sys.getswitchinterval() <= SWITCH_INTERVAL_S
