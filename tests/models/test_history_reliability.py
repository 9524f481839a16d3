"""The history under faults: damaged pages, runs whose writer died, a read-only folder."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from stagewise.models.errors import StagewiseError
from stagewise.models.inference.images import load_image
from stagewise.models.storage.history import History, export_readable

REPO = Path(__file__).resolve().parents[2]


def start(history: History, image_file: Path, question: str = "q") -> int:
    return history.start(load_image(image_file), image_file.read_bytes(), image_file.name,
                         question, "tiny.gguf", {})


def fill(folder: Path, image_file: Path, runs: int = 120) -> list[int]:
    """A closed history with ``runs`` finished-looking runs, each about 1 kB of question."""
    with History(folder) as history:
        ids = [start(history, image_file, f"question-{i:04d} " + "x" * 1000) for i in range(runs)]
        history.fail(ids[0], "a failure to keep")
    return ids


def damage_a_page(database: Path, marker: bytes) -> None:
    """Overwrite the page holding ``marker`` (not the first page) with garbage."""
    data = bytearray(database.read_bytes())
    size = int.from_bytes(data[16:18], "big")
    at = data.index(marker)
    page = at // size
    assert page > 0
    data[page * size:(page + 1) * size] = b"\xa5" * size
    database.write_bytes(bytes(data))


# --------------------------------------------------------------------------------------------
# A damaged database


def test_damaged_pages_are_found_at_opening_kept_aside_and_exportable(image_file, tmp_path):
    folder = tmp_path / "history"
    fill(folder, image_file)
    database = folder / "history.sqlite3"
    damage_a_page(database, b"question-0060 ")
    damaged_bytes = database.read_bytes()
    with pytest.raises(StagewiseError, match="damaged"):
        History(folder)  # as `stagewise ask` opens it: it refuses to write into the damage
    with History(folder, recover=True) as history:
        assert "damaged" in history.notice and "export" in history.notice.lower()
        assert history.damaged is not None and history.damaged.read_bytes() == damaged_bytes
        assert history.entries() == []  # a new history
        start(history, image_file)  # and it works
        out = tmp_path / "readable.json"
        summary = export_readable(history.damaged, out)
    data = json.loads(out.read_text(encoding="utf-8"))
    questions = {run["question"].split()[0] for run in data["runs"]}
    assert summary.runs == len(data["runs"]) and 100 <= summary.runs < 120
    assert summary.unreadable > 0
    assert "question-0060" not in questions and {"question-0000", "question-0119"} <= questions
    first = next(r for r in data["runs"] if r["question"].startswith("question-0000"))
    assert first["error"] == "a failure to keep" and first["status"] == "failed"
    assert first["candidates"] == [] and "verdicts" in first and "checks" in first


def test_export_of_an_unreadable_file_says_so(tmp_path):
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(os.urandom(8192))
    with pytest.raises(StagewiseError, match="nothing can be read"):
        export_readable(garbage, tmp_path / "out.json")


# --------------------------------------------------------------------------------------------
# Runs whose writer died


_OWNER = """
import os, sys
from pathlib import Path
from stagewise.models.storage.history import History, export_readable
from stagewise.models.inference.images import load_image

folder, image_file, wait = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "wait"
history = History(folder)
run_id = history.start(load_image(image_file), image_file.read_bytes(), image_file.name,
                       "asked elsewhere", "tiny.gguf", {})
print(run_id, flush=True)
if wait:
    sys.stdin.read()
os._exit(0)  # the run is left "running"
"""


def owner_process(folder: Path, image_file: Path, *, wait: bool) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(folder), str(image_file), "wait" if wait else "go"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def statuses(folder: Path) -> dict[int, str]:
    db = sqlite3.connect(f"{(folder / 'history.sqlite3').as_uri()}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT id, status FROM runs").fetchall())
    finally:
        db.close()


def test_only_runs_whose_owner_is_gone_are_marked_interrupted_by_any_opening(image_file,
                                                                             tmp_path):
    folder = tmp_path / "history"
    with History(folder, recover=True) as window:
        mine = start(window, image_file)
        with History(folder, recover=True) as second_window:
            assert second_window.entries()[0].status == "running"  # the first one's live run
        live, live_id = owner_process(folder, image_file, wait=True)
        gone, gone_id = owner_process(folder, image_file, wait=False)
        assert gone.wait(30) == 0
        with History(folder):  # as `stagewise ask` (or the engine thread) opens it
            pass
        assert statuses(folder) == {mine: "running", live_id: "running", gone_id: "interrupted"}
        live.kill()
        live.wait(30)
        assert window.repair_interrupted() == [live_id]  # an open history can look again
        assert statuses(folder)[live_id] == "interrupted"
        assert window.repair_interrupted() == []
    assert statuses(folder)[mine] == "running"  # closing is not dying: the process lives on


def test_runs_from_before_owners_were_kept_are_repaired(image_file, tmp_path):
    folder = tmp_path / "history"
    with History(folder) as history:
        old = start(history, image_file)
    db = sqlite3.connect(folder / "history.sqlite3")
    db.execute("UPDATE runs SET owner = NULL")
    db.commit()
    db.close()
    with History(folder):
        pass
    assert statuses(folder) == {old: "interrupted"}


# --------------------------------------------------------------------------------------------
# A read-only folder


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make the folder (and its database) read-only, even for root (chattr +i)."""
    paths = [folder, *folder.glob("history.sqlite3*")]
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", *map(str, paths)], check=False).returncode != 0:
            pytest.skip("cannot make a folder read-only for root here")
        undo = ["chattr", "-i", *map(str, paths)]
    else:
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
        undo = ["chmod", "u+w", *map(str, paths)]
    try:
        yield
    finally:
        subprocess.run(undo, check=True)


@pytest.mark.parametrize("recover", [True, False])
def test_a_read_only_folder_opens_the_history_read_only(image_file, tmp_path, recover):
    folder = tmp_path / "history"
    ids = fill(folder, image_file, runs=3)
    with read_only(folder), History(folder, recover=recover) as history:
        assert history.read_only
        assert "read-only" in history.notice and "not be saved" in history.notice
        assert [e.id for e in history.entries()] == ids[::-1]
        assert history.load(ids[0]).error == "a failure to keep"
        with pytest.raises(StagewiseError, match="read-only"):
            start(history, image_file)
        with pytest.raises(StagewiseError, match="read-only"):
            history.delete(ids)
        assert history.repair_interrupted() == []
    assert sorted(p.name for p in folder.iterdir()) == ["history.sqlite3", "images", "thumbs"]
    with History(folder) as writable:
        assert not writable.read_only and writable.notice == ""


def test_an_owner_is_a_process_not_just_a_pid():
    from stagewise.models.storage.history.owners import current_owner, owner_alive

    host, boot, pid, started = current_owner().split("/")
    assert owner_alive(current_owner())
    assert not owner_alive(None)  # saved before owners were kept
    assert owner_alive(f"elsewhere/{boot}/{pid}/{started}")  # cannot be seen from here
    if started:  # Linux: the same pid given to a later process is another owner
        assert not owner_alive(f"{host}/{boot}/{pid}/{int(started) + 1}")
    if boot:  # a run from before a reboot
        assert not owner_alive(f"{host}/other-boot/{pid}/{started}")
