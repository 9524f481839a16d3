"""`stagewise batch` as a person runs it: real processes on the shipped demo model, a folder
of pictures the test draws, killed and interrupted for real, and compared with `ask`."""

from __future__ import annotations

import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stagewise.models.batch import COLUMNS
from stagewise.models.build.puzzles.scenes import draw, random_scene
from stagewise.models.storage.history import History
from tests.desktop.test_cli import ROOT, stagewise
from tests.models.test_images import write_header_only_png

QUESTIONS = ("How many circles are there?", "What color is the square?")
FAST = ("--max-stage-tokens", "2", "--threads", "2")  # short answers: these tests are about
# loads, encodes and rows; test_rows_match_a_per_image_ask compares whole answers


def scenes(folder: Path, count: int, *, bad: bool = False) -> Path:
    """``count`` puzzle pictures (distinct scenes), and with ``bad`` three files that are
    not usable images: text, a truncated PNG, and a header claiming a huge picture."""
    folder.mkdir()
    for i in range(count):
        draw(random_scene(random.Random(i))).save(folder / f"scene-{i:03}.png")
    if bad:
        (folder / "notes.txt").write_text("not a picture\n")
        whole = (folder / "scene-000.png").read_bytes()
        (folder / "truncated.png").write_bytes(whole[: len(whole) // 2])
        write_header_only_png(folder / "huge.png", 20_000, 20_000)
    return folder


def summary_counts(stderr: str) -> tuple[int, int]:
    """The model loads and image encodes the batch's last line reports."""
    match = re.search(r"(\d+) model load\(s\) · (\d+) image encode\(s\)", stderr)
    assert match, stderr
    return int(match[1]), int(match[2])


def read_rows(path: Path) -> list[dict[str, str]]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def batch_command(folder: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "stagewise.desktop.cli", "batch", str(folder),
            *(a for q in QUESTIONS[:1] for a in ("--question", q)), "--out", str(out),
            *FAST, *extra]


@pytest.mark.slow
def test_two_hundred_images_one_load_one_encode_each_then_nothing_to_redo(tmp_path):
    folder = scenes(tmp_path / "pictures", 200, bad=True)
    out = tmp_path / "results.csv"
    args = ("batch", folder, "--question", QUESTIONS[0], "--out", out, *FAST, "--no-history")
    first = stagewise(*args, timeout=900)
    assert first.returncode == 0, first.stderr
    assert summary_counts(first.stderr) == (1, 200)
    rows = read_rows(out)
    assert tuple(rows[0]) == COLUMNS
    finished = [r for r in rows if r["status"] == "finished"]
    assert len(finished) == 200
    assert all(float(r["seconds"]) > 0 and r["question"] == QUESTIONS[0] for r in finished)
    assert all(int(r["image_tokens"]) > 0 and len(r["sha256"]) == 64 for r in finished)
    assert all("confidence" in r for r in rows)
    # the window's badge for each answer that has a conclusion (beam 1: its probability)
    assert all(r["confidence"] in ("sure", "fairly sure", "unsure") for r in rows
               if r["status"] == "finished" and r["conclusion"])
    bad = {Path(r["path"]).name: r["error"] for r in rows if r["status"] == "bad file"}
    assert set(bad) == {"notes.txt", "truncated.png", "huge.png"}
    assert "not an image" in bad["notes.txt"]
    assert "corrupt or truncated" in bad["truncated.png"]
    assert "too large" in bad["huge.png"]
    skipped = [line for line in first.stderr.splitlines()
               if line.startswith("stagewise: skipped: ")]
    assert len(skipped) == 3, first.stderr  # listed once each on stderr, with why
    for name, why in bad.items():
        assert any(f"{name}: {why}" in line for line in skipped), first.stderr

    again = stagewise(*args, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "0 answers written" in again.stderr and "203 already there" in again.stderr
    assert summary_counts(again.stderr) == (1, 0)
    assert read_rows(out) == rows


def test_a_killed_batch_resumes_with_only_the_rest(tmp_path):
    folder = scenes(tmp_path / "pictures", 12)
    out = tmp_path / "results.jsonl"
    command = [*batch_command(folder, out), "--question", QUESTIONS[1], "--no-history"]
    env = dict(os.environ)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not out.exists() or len(out.read_bytes().splitlines()) < 5:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.kill()  # SIGKILL: no handler, no cleanup
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        if process.stderr:
            process.stderr.close()
    before = read_rows(out)
    assert 5 <= len(before) < 24, "the kill came too late to test a resume"
    done_images = {r["path"] for r in before}
    half_done = sum(1 for p in done_images if sum(r["path"] == p for r in before) == 1)

    rerun = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    after = read_rows(out)
    assert after[: len(before)] == before  # kept as they were
    keys = [(r["path"], r["question"]) for r in after]
    assert len(keys) == len(set(keys)) == 24  # each image and question once
    assert f"{24 - len(before)} answers written" in rerun.stderr
    assert f"{len(before)} already there" in rerun.stderr
    # encoded again: the images not started, and the one cut between its two questions
    assert summary_counts(rerun.stderr) == (1, 12 - len(done_images) + half_done)


def test_ctrl_c_stops_between_answers_and_keeps_every_row(tmp_path):
    folder = scenes(tmp_path / "pictures", 12)
    out = tmp_path / "results.csv"
    process = subprocess.Popen(batch_command(folder, out, "--no-history"), cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not out.exists() or len(out.read_bytes().splitlines()) < 3:
        assert process.poll() is None
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "run the same command again to go on" in stderr
    rows = read_rows(out)
    assert 2 <= len(rows) < 12 and all(r["status"] == "finished" for r in rows)


def test_rows_match_a_per_image_ask_and_open_from_the_history(tmp_path):
    folder = scenes(tmp_path / "pictures", 3)
    out = tmp_path / "results.jsonl"
    data = tmp_path / "data"
    whole = ("--threads", "2")  # whole answers, every stage to its end
    result = stagewise("batch", folder, *(a for q in QUESTIONS for a in ("--question", q)),
                       "--out", out, *whole, "--seed", "7", "--temperature", "0.9",
                       data_dir=data)
    assert result.returncode == 0, result.stderr
    rows = read_rows(out)
    assert len(rows) == 6 and all(r["conclusion"] for r in rows)
    for picture in sorted(folder.iterdir())[:2]:
        ask = stagewise("ask", "--image", picture,
                        *(a for q in QUESTIONS for a in ("--question", q)), *whole,
                        "--seed", "7", "--temperature", "0.9", "--beam", "1", "--json",
                        "--no-history")
        assert ask.returncode == 0, ask.stderr
        answers = {a["question"]: a for a in json.loads(ask.stdout)}
        for row in (r for r in rows if r["path"] == str(picture)):
            assert row["conclusion"] == answers[row["question"]]["stages"]["conclusion"]
            assert row["image_tokens"] == answers[row["question"]]["timings"]["image_tokens"]
    history = History(data / "history")
    try:
        for row in rows:  # each answer is a run of the history, as any other
            run = history.load(row["run_id"])
            assert run.entry.question == row["question"] and run.entry.status == "finished"
            assert run.result is not None
            assert run.result.conclusion.strip() == row["conclusion"]
    finally:
        history.close()


def test_bad_results_files_are_refused_before_the_model_loads(tmp_path):
    folder = scenes(tmp_path / "pictures", 1)
    wrong = stagewise("batch", folder, "--question", "?", "--out", tmp_path / "out.txt")
    assert wrong.returncode == 2 and "must end in .csv or .jsonl" in wrong.stderr
    foreign = tmp_path / "other.csv"
    foreign.write_text("name,score\na,1\n")
    refused = stagewise("batch", folder, "--question", "?", "--out", foreign)
    assert refused.returncode == 2 and "is not a batch's results file" in refused.stderr
    assert foreign.read_text() == "name,score\na,1\n"  # left as it was
    empty = stagewise("batch", tmp_path / "nowhere", "--question", "?", "--out",
                      tmp_path / "r.csv")
    assert empty.returncode == 2 and "no such folder" in empty.stderr


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_row_cut_short_by_a_kill_is_dropped_and_the_next_starts_on_its_own_line(
        tmp_path, suffix):
    from stagewise.models.batch import BatchRow, ResultsFile

    path = tmp_path / f"results{suffix}"
    with ResultsFile(path) as results:
        results.append(BatchRow("/a.png", "q?", "2", seconds=0.5, sha256="ab", settings="k"))
    whole = path.read_bytes()
    path.write_bytes(whole + whole.splitlines(keepends=True)[-1][:7])  # half a row
    with ResultsFile(path) as results:
        assert [r.path for r in results.rows] == ["/a.png"]
        assert results.done(results.rows[0].key)
        results.append(BatchRow("/b.png", "q?", "3", sha256="cd", settings="k"))
    with ResultsFile(path) as results:
        assert [r.path for r in results.rows] == ["/a.png", "/b.png"]
