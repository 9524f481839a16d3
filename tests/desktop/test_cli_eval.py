"""`stagewise eval` on real files with the tiny random-weight pair (answers are noise)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stagewise.desktop.cli import main
from stagewise.models.library.demo import DEMO_MMPROJ, DEMO_MODEL, DEMO_TEST
from tests.desktop.test_cli import ROOT
from tests.models.test_evaluation import cot_record, write_jsonl, write_png

TINY_RUN = ("--beam", "2", "--max-stage-tokens", "8", "--threads", "1")


def question_file(folder: Path, n: int = 3) -> Path:
    records = []
    for i in range(n):
        write_png(folder / "images" / f"{i}.png", circles=i % 3 + 1)
        kind = ("count", "colour")[i % 2]
        records.append(cot_record(f"test-{i:06d}-{kind}", f"images/{i}.png",
                                  "<image>\nHow many circles?", str(i % 3 + 1)))
    return write_jsonl(folder / "test.jsonl", records)


def eval_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    status = main(["eval", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_json_has_every_strategy_and_every_question(tmp_path, capsys):
    data = question_file(tmp_path)
    status, out, err = eval_cli(capsys, data, "--limit", "2", "--beam", "2", "--strategy",
                                "single,stage", "--max-stage-tokens", "8", "--json",
                                "--threads", "1")  # one thread: no spinning when cores are busy
    assert status == 0, err
    report = json.loads(out)
    assert {"data", "model", "mmproj", "status", "questions", "done", "settings",
            "strategies", "comparisons", "items"} <= set(report)
    assert report["status"] == "finished" and report["questions"] == report["done"] == 2
    assert [s["strategy"] for s in report["strategies"]] == ["single", "stage"]
    single, stage = report["strategies"]
    assert (single["beam"], stage["beam"], stage["select"]) == (1, 2, "logprob")
    for s in report["strategies"]:
        assert {"n", "correct", "accuracy", "ci95", "seconds_per_question",
                "tokens_per_question", "by_kind", "picks"} <= set(s)
        assert s["n"] == 2 and s["seconds_per_question"] > 0
    assert report["comparisons"][0]["strategy"] == "stage"
    assert len(report["items"]) == 4
    assert {"id", "strategy", "prediction", "correct", "seconds"} <= set(report["items"][0])
    assert report["settings"]["max_stage_tokens"] == 8
    assert "built-in demo model" in err  # no --model: the demo pair, and a note saying so
    assert "eval 2/2" in err  # progress on stderr, not on stdout


def test_the_table_has_a_row_per_strategy(tmp_path, capsys, tiny_pair):
    data = question_file(tmp_path)
    status, out, err = eval_cli(capsys, data, "--model", tiny_pair.model, "--mmproj",
                                tiny_pair.mmproj, "--limit", "2", *TINY_RUN)
    assert status == 0, err
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("strategy"))
    assert "accuracy" in lines[header] and "95% CI" in lines[header]
    rows = [line.split()[0] for line in lines[header + 1: header + 7]]
    assert rows == ["greedy", "single", "stage", "sentence", "best-of-n", "retrace"]
    assert "retrace's cutoff is not calibrated" in err
    assert any(line.startswith("stage vs greedy: ") and " points (95% CI " in line
               for line in lines)  # every search against greedy decoding
    assert any(line.startswith("logprob (stage):") for line in lines)  # the default
    assert any(line.startswith("kind") for line in lines)


def test_strategies_repeat_or_split_by_commas(tmp_path, capsys, tiny_pair):
    data = question_file(tmp_path, 1)
    status, out, _ = eval_cli(capsys, data, "--model", tiny_pair.model, "--strategy", "stage",
                              "--strategy", "best-of-n,stage", "--select", "logprob",
                              "--json", *TINY_RUN)
    assert status == 0
    report = json.loads(out)
    assert [s["strategy"] for s in report["strategies"]] == ["stage", "best-of-n"]
    assert report["comparisons"] == []  # no greedy or single pass to compare with
    assert all(s["select"] == "logprob" and s["picks"] is not None  # every choosing selection
               for s in report["strategies"])                     # is scored on its picks
    with pytest.raises(SystemExit) as exited:
        main(["eval", str(data), "--strategy", "single,beam"])
    assert exited.value.code == 2
    assert "unknown strategy 'beam'" in capsys.readouterr().err


def test_demo_without_demo_files_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STAGEWISE_DEMO_DIR", str(tmp_path))
    status, out, err = eval_cli(capsys, "--demo")
    assert status == 2 and not out
    assert err.startswith("stagewise: error: this install has no demo test split")
    assert len(err.strip().splitlines()) == 1
    question_file(tmp_path / "test", 1)  # a split but no model
    status, _, err = eval_cli(capsys, "--demo")
    assert status == 2 and "this install has no demo model" in err and DEMO_MODEL in err


def test_demo_runs_the_demo_model_on_its_test_split(tmp_path, capsys, monkeypatch, tiny_pair):
    shutil.copy(tiny_pair.model, tmp_path / DEMO_MODEL)
    shutil.copy(tiny_pair.mmproj, tmp_path / DEMO_MMPROJ)
    split = question_file(tmp_path / DEMO_TEST.parent, 2)
    assert split == tmp_path / DEMO_TEST
    monkeypatch.setenv("STAGEWISE_DEMO_DIR", str(tmp_path))
    status, out, err = eval_cli(capsys, "--demo", "--strategy", "single,stage", "--json",
                                *TINY_RUN)
    assert status == 0, err
    report = json.loads(out)
    assert report["model"] == str(tmp_path / DEMO_MODEL)
    assert report["data"] == str(split) and report["done"] == 2
    assert "random-weight" not in err


@pytest.mark.parametrize(("args", "words"), [
    (("{dir}/missing.jsonl",), "missing.jsonl: no such file"),
    (("{dir}/test.jsonl", "--demo"), "not both"),
    ((), "give a question file"),
    (("{dir}/broken.jsonl",), "broken.jsonl:2: bad JSON"),
])
def test_bad_requests_end_in_one_line(tmp_path, capsys, args, words):
    question_file(tmp_path, 1)
    (tmp_path / "broken.jsonl").write_text(
        (tmp_path / "test.jsonl").read_text() + "{oops\n", encoding="utf-8")
    status, out, err = eval_cli(capsys, *(a.format(dir=tmp_path) for a in args))
    assert status == 2 and not out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stagewise: error: ")
    assert words in lines[0]


def test_ctrl_c_stops_cleanly_and_reports_what_was_done(tmp_path, tiny_pair):
    data = question_file(tmp_path, 60)
    process = subprocess.Popen(
        [sys.executable, "-m", "stagewise.desktop.cli", "eval", str(data),
         "--model", str(tiny_pair.model), "--mmproj", str(tiny_pair.mmproj),
         "--strategy", "single,stage", *TINY_RUN],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env=dict(os.environ),
    )
    try:
        for line in process.stderr:  # not a terminal: a progress line every 10%
            if line.startswith("eval "):
                process.send_signal(signal.SIGINT)
                break
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err and "stopped after" in err
    assert out.startswith("cancelled: ")
    done = int(out.split()[1])
    assert 6 <= done < 60
    assert any(line.startswith("stage ") for line in out.splitlines())


def test_retrace_calibrates_its_cutoff_on_other_questions(tmp_path, capsys, tiny_pair):
    data = question_file(tmp_path / "test")
    calibration = question_file(tmp_path / "calibration", n=2)
    status, out, err = eval_cli(capsys, data, "--model", tiny_pair.model, "--mmproj",
                                tiny_pair.mmproj, "--limit", "2", "--strategy",
                                "single,retrace", "--calibration", calibration,
                                "--calibration-size", "2", "--json", *TINY_RUN)
    assert status == 0, err
    report = json.loads(out)
    settings = report["settings"]
    assert settings["retrace_calibration"] == (
        "retrace: 60th percentile of selfcheck scores on 2 questions of test.jsonl")
    assert [s["strategy"] for s in report["strategies"]] == ["single", "retrace"]
    retrace = report["strategies"][1]
    assert retrace["select"] == "selfcheck"  # retrace's own selection
    assert 0.0 <= retrace["retrace_cutoff"] <= 1.0
    assert "calibrating retrace's cutoff on 2 questions" in err
