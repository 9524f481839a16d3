"""kill -9 at random moments of real answers: the history stays whole and says what happened."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from stagewise.models.build.tiny_vlm import TinyPair
from stagewise.models.storage.history import History

REPO = Path(__file__).resolve().parents[2]
KILLS = 20

# Writes history the way the window's engine thread does (desktop/worker.py): History.start,
# then History.record for every event of a real search, answering until it is killed.
_ANSWERING = """
import sys, threading
from pathlib import Path
from stagewise.models.events import AnswerFinished
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.images import load_image
from stagewise.models.reasoning.llama_backend import LlamaBackend
from stagewise.models.reasoning.search import SearchSettings, StageSearch
from stagewise.models.storage.history import History

folder, model, mmproj, image_file = map(Path, sys.argv[1:5])
image = load_image(image_file)
settings = SearchSettings(beam=2, select="judge", max_stage_tokens=8, max_judge_tokens=6,
                          seed=5)
with Engine(model, mmproj, EngineSettings(n_ctx=4096, n_seq_max=12, threads=1)) as engine:
    history = History(folder)
    print("ready", flush=True)
    for n in range(10_000):
        run_id = history.start(image, image_file.read_bytes(), image_file.name,
                               f"question {n}", "tiny.gguf", {"beam": 2})
        search = StageSearch(LlamaBackend(engine), settings)
        for event in search.run(image, "How many?", threading.Event()):
            history.record(run_id, event)
            if isinstance(event, AnswerFinished):
                print("done", run_id, flush=True)
"""


def _runs(database: Path) -> dict[int, str]:
    db = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return dict(db.execute("SELECT id, status FROM runs").fetchall())
    finally:
        db.close()


def _answer_and_kill(folder: Path, tiny_pair: TinyPair, image_file: Path,
                     delay: float) -> set[int]:
    """Start answering in a subprocess, kill -9 it after ``delay`` s; the runs it finished."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _ANSWERING, str(folder), str(tiny_pair.model),
         str(tiny_pair.mmproj), str(image_file)], stdout=subprocess.PIPE, text=True,
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return {int(line.split()[1]) for line in out.splitlines() if line.startswith("done ")}


def test_twenty_kills_mid_answer_lose_nothing_finished(tiny_pair, image_file, tmp_path):
    folder = tmp_path / "history"
    database = folder / "history.sqlite3"
    chance = random.Random(9)
    finished: set[int] = set()
    interrupted: set[int] = set()
    began = time.perf_counter()
    for kill in range(KILLS):
        finished |= _answer_and_kill(folder, tiny_pair, image_file, chance.uniform(0.0, 0.4))
        runs = _runs(database)
        running = {i for i, status in runs.items() if status == "running"}
        assert len(running) <= 1 and not running & finished
        assert {runs[i] for i in finished} == {"finished"}
        # the next opening, by either front end, repairs the killed run
        with History(folder, recover=kill % 2 == 0) as history:
            assert history.notice == ""
            for run_id in running:
                assert history.load(run_id).entry.status == "interrupted"
            for run_id in finished:
                stored = history.load(run_id)
                assert stored.result.status == "finished" and stored.result.answer_text
        interrupted |= running
    runs = _runs(database)
    assert set(runs) == finished | interrupted
    assert {runs[i] for i in interrupted} <= {"interrupted"}
    print(f"\n{KILLS} kills in {time.perf_counter() - began:.1f} s: {len(finished)} runs "
          f"finished and intact, {len(interrupted)} killed mid-answer and marked interrupted")
    assert len(interrupted) >= KILLS // 2  # most kills landed inside an answer
