"""`stagewise eval` on VLMEvalKit-shaped TSVs: VLMEvalKit's figures in the report, the
grader, the score CSV. The tiny random-weight pair answers (noise), so the tests check that
each figure is what VLMEvalKit's rule makes of the answers the report lists."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from stagewise.desktop.cli import build_parser
from stagewise.models.build.tiny_vlm import TinyPair
from stagewise.models.disk.paths import CACHE_DIR_ENV
from stagewise.models.library.demo import demo_pair
from tests.desktop.test_cli_eval import eval_cli
from tests.models.test_vlmevalkit import MC_HEADER, mc_row, picture, write_tsv

TINY = ("--max-stage-tokens", "8", "--threads", "1")
HALLUSION_HEADER = ("index", "category", "l2-category", "question", "answer", "image")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_DIR_ENV, str(folder))
    return folder


def mmbench(folder: Path) -> Path:
    """Two questions, each with two rotated copies (index + k·1,000,000)."""
    rows = [mc_row(0, "B"), mc_row(1, "A", category="shape"), mc_row(1000000, "C", image="0"),
            mc_row(1000001, "B", image="1"), mc_row(2000000, "A", image="0"),
            mc_row(2000001, "C", image="1")]
    return write_tsv(folder / "MMBench_DEV_EN.tsv", MC_HEADER, rows)


def hallusionbench(folder: Path) -> Path:
    """Set 0: two figures, each asked two questions; set 1: one figure, one question."""
    rows = []
    for n, (set_id, figure, question, answer) in enumerate(
            [(0, 0, 0, "Yes"), (0, 0, 1, "No"), (0, 1, 0, "No"), (0, 1, 1, "Yes"),
             (1, 0, 0, "Yes")]):
        rows.append({"index": f"VD_figure_x_{set_id}_{figure}_{question}", "category": "VD",
                     "l2-category": "figure", "question": f"Is circle {n} red?",
                     "answer": answer, "image": picture()})
    return write_tsv(folder / "HallusionBench.tsv", HALLUSION_HEADER, rows)


def circular_accuracy(items: list[dict]) -> float:
    """CircularEval from the report's own rows: a question is right when all its copies are."""
    groups: dict[int, list[bool]] = {}
    for item in items:
        index = int(item["id"].rsplit("-", 1)[1])
        groups.setdefault(index % 1_000_000, []).append(item["correct"])
    return round(sum(all(g) for g in groups.values()) / len(groups), 4)


def hallusion_figures(items: list[dict]) -> dict[str, float]:
    figures: dict[str, list[bool]] = {}
    questions: dict[str, list[bool]] = {}
    for item in items:
        ids = item["id"].split("_")
        figures.setdefault(f"{ids[3]}_{ids[4]}", []).append(item["correct"])
        questions.setdefault(f"{ids[3]}_{ids[5]}", []).append(item["correct"])
    return {"aAcc": round(sum(i["correct"] for i in items) / len(items), 4),
            "fAcc": round(sum(all(g) for g in figures.values()) / len(figures), 4),
            "qAcc": round(sum(all(g) for g in questions.values()) / len(questions), 4)}


def test_mmbench_reports_circular_accuracy_and_vlmevalkits_csv(tmp_path, capsys, tiny_pair):
    scores = tmp_path / "scores.csv"
    status, out, err = eval_cli(capsys, mmbench(tmp_path), "--model", tiny_pair.model,
                                "--mmproj", tiny_pair.mmproj, "--strategy", "greedy,single",
                                "--json", "--csv", scores, *TINY)
    assert status == 0, err
    report = json.loads(out)
    assert report["benchmark"] == {"name": "MMBench_DEV_EN", "rules": "VLMEvalKit (mcq)",
                                   "circular": True, "grader": None}
    assert report["settings"]["max_stage_tokens"] == 8
    for strategy in report["strategies"]:
        rows = [i for i in report["items"] if i["strategy"] == strategy["strategy"]]
        assert len(rows) == 6 and strategy["circular_questions"] == 2
        assert strategy["circular_accuracy"] == circular_accuracy(rows)
        undecided = [i for i in rows if i["extracted"] is None]
        assert strategy["undecided"] == len(undecided)
        assert not any(i["correct"] for i in undecided)
    with scores.open() as file:
        table = list(csv.DictReader(file))
    assert [row["strategy"] for row in table] == ["greedy", "single"]
    assert {"split", "Overall", "perception", "colour", "shape"} <= set(table[0])
    for row, strategy in zip(table, report["strategies"], strict=True):
        assert float(row["Overall"]) == strategy["circular_accuracy"]
    assert f"wrote {scores}" in err


def test_limit_takes_whole_circular_questions_and_the_table_names_them(tmp_path, capsys,
                                                                        tiny_pair):
    status, out, err = eval_cli(capsys, mmbench(tmp_path), "--model", tiny_pair.model,
                                "--mmproj", tiny_pair.mmproj, "--strategy", "single",
                                "--limit", "1", *TINY)
    assert status == 0, err
    assert out.startswith("3 questions · ")  # question 0 and its two rotated copies
    assert "VLMEvalKit's figures for MMBench_DEV_EN (no grader:" in out
    assert "1 questions with all their rotated copies" in out


def test_hallusionbench_reports_aacc_facc_qacc(tmp_path, capsys, tiny_pair: TinyPair):
    status, out, err = eval_cli(capsys, hallusionbench(tmp_path), "--model", tiny_pair.model,
                                "--mmproj", tiny_pair.mmproj, "--strategy", "single",
                                "--json", *TINY)
    assert status == 0, err
    report = json.loads(out)
    (single,) = report["strategies"]
    expected = hallusion_figures(report["items"])
    assert {key: single[key] for key in ("aAcc", "fAcc", "qAcc")} == expected
    assert single["accuracy"] == expected["aAcc"]


def mathvista(folder: Path) -> Path:
    header = ("index", "question", "answer", "question_type", "answer_type", "choices",
              "answer_option", "task", "skills", "image")
    return write_tsv(folder / "MathVista_MINI.tsv", header, [
        {"index": "1", "question": "How many circles are there?", "answer": "1",
         "question_type": "free_form", "answer_type": "integer", "task": "counting",
         "skills": "['arithmetic reasoning']", "image": picture()},
        {"index": "2", "question": "What colour is the circle?", "answer": "red",
         "question_type": "multi_choice", "answer_type": "text",
         "choices": "['red', 'blue']", "answer_option": "A", "task": "colour",
         "skills": "['visual recognition']", "image": picture()}])


def test_llm_graded_benchmarks_need_a_grader(tmp_path, capsys):
    status, out, err = eval_cli(capsys, mathvista(tmp_path), "--model", "missing.gguf")
    assert status == 2 and out == ""
    assert err.strip().splitlines() == [  # one line, before any model is looked for
        "stagewise: error: MathVista is scored by an LLM in VLMEvalKit: give --grader GGUF, "
        "a local model to grade its answers"]


def test_mathvista_and_mmvet_run_with_a_grader(tmp_path, capsys, tiny_pair):
    grader = demo_pair()
    assert grader is not None
    scores = tmp_path / "mathvista.csv"
    status, out, err = eval_cli(capsys, mathvista(tmp_path), "--model", tiny_pair.model,
                                "--mmproj", tiny_pair.mmproj, "--strategy", "single",
                                "--grader", grader.model, "--grader-mmproj", grader.mmproj,
                                "--json", "--csv", scores, *TINY)
    assert status == 0, err
    report = json.loads(out)
    assert report["benchmark"]["grader"] == grader.model.name
    asked = [item for item in report["items"] if "grader_output" in item]
    assert asked and all(isinstance(item["grader_output"], str) for item in asked)
    assert f"grading {len(asked)} answers with {grader.model.name}" in err
    assert report["strategies"][0]["prefetch_rate"] == (2 - len(asked)) / 2
    with scores.open() as file:
        table = {row["Task&Skill"]: row for row in csv.DictReader(file)}
    assert list(table) == ["Overall", "arithmetic reasoning", "counting",
                           "visual recognition", "colour"]
    assert table["Overall"]["tot"] == "2"
    vet = write_tsv(tmp_path / "MMVet.tsv", ("index", "question", "answer", "category",
                                             "image"),
                    [{"index": "0", "question": "What colour is the circle?", "answer": "red",
                      "category": "rec", "image": picture()}])
    status, out, err = eval_cli(capsys, vet, "--model", tiny_pair.model, "--mmproj",
                                tiny_pair.mmproj, "--strategy", "single", "--grader",
                                grader.model, "--json", *TINY)
    assert status == 0, err
    report = json.loads(out)
    (item,) = report["items"]
    assert 0.0 <= item["points"] <= 1.0 and isinstance(item["grader_output"], str)
    assert report["strategies"][0]["mmvet_score"] == round(item["points"], 4)


def test_the_stage_budget_follows_the_reference_unless_set():
    parser = build_parser()
    assert parser.parse_args(["eval", "x.tsv"]).max_stage_tokens == 2048
    assert parser.parse_args(["eval", "x.tsv", "--max-stage-tokens", "64"]).max_stage_tokens \
        == 64
    assert parser.parse_args(["ask", "--image", "x.png", "--question", "q"]) \
        .max_stage_tokens == 256  # the window's and ask's stay shorter


def test_a_grader_that_cannot_load_loses_no_answers(tmp_path, capsys, tiny_pair):
    demo = demo_pair()
    assert demo is not None
    vet = write_tsv(tmp_path / "MMVet.tsv", ("index", "question", "answer", "category",
                                             "image"),
                    [{"index": "0", "question": "What colour is the circle?", "answer": "red",
                      "category": "rec", "image": picture()}])
    # the tiny text model with the demo's projector: planned, but the pair does not load
    status, out, err = eval_cli(capsys, vet, "--model", tiny_pair.model, "--mmproj",
                                tiny_pair.mmproj, "--strategy", "single", "--grader",
                                tiny_pair.model, "--grader-mmproj", demo.mmproj, "--json",
                                *TINY)
    assert status == 1
    assert "stagewise: error: grading failed (" in err and "do not belong together" in err
    report = json.loads(out)  # the answers are still reported
    (item,) = report["items"]
    assert isinstance(item["prediction"], str) and not item["correct"]
    assert item["points"] == 0.0 and "grader_output" not in item  # as without a grader
    assert report["benchmark"]["grader"] is None and "Traceback" not in err
