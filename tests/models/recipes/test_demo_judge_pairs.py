"""The judge alone on right-vs-wrong pairs, with the demo model through llama.cpp."""

from __future__ import annotations

import json
import re
from pathlib import Path

from stagewise.models.library.demo import DEMO_TEST, DEMO_VALIDATION, demo_dir
from stagewise.models.reasoning.judge import read_choice
from stagewise.models.recipes.demo import judge_pairs as cli
from stagewise.models.recipes.demo.judge_pairs import PairVerdict, recipe_puzzles, summarise


def _decisions(out: list[str], select: str) -> list[PairVerdict]:
    rows = [json.loads(line) for line in out if line.startswith("{")]
    return [PairVerdict(**{k: v for k, v in r.items() if k != "select"}) for r in rows
            if r["select"] == select]


def test_every_unit_is_decided_both_ways_and_scored_by_the_right_ones_place(capsys):
    assert cli.main(["--limit", "2", "--threads", "1", "--json",
                     "--select", "judge,verdict,selfcheck"]) == 0
    out = capsys.readouterr().out.splitlines()
    for select in ("judge", "verdict"):
        verdicts = _decisions(out, select)
        assert len(verdicts) == 2 * 5 * 2  # puzzles × units × orders
        for first, second in zip(verdicts[::2], verdicts[1::2], strict=True):
            assert (first.puzzle, first.unit) == (second.puzzle, second.unit)
            assert first.right_first and not second.right_first
    for v in _decisions(out, "judge"):  # read as the reference reads a verdict
        choice, named = read_choice(v.text)
        assert v.unread == (not named)
        assert v.picked_right == (choice == (1 if v.right_first else 2)), v
    pointwise = _decisions(out, "selfcheck")
    assert len(pointwise) == 2 * 5 and all(v.right_first for v in pointwise)
    for v in pointwise:
        right, wrong = (float(x.split()[-1]) for x in v.text.split(","))
        assert v.picked_right == (right > wrong)
    table = "\n".join(out)
    for select in ("judge", "verdict", "selfcheck"):
        assert f"{select} on right-vs-wrong pairs: 2 puzzles of the val split (seed 0)" in table
    for row in summarise(_decisions(out, "verdict")):
        assert re.search(rf"^{row.unit} +{row.accuracy:.1%}", table, re.MULTILINE), row.unit
    for row in summarise(pointwise):  # the pointwise table adds the balanced accuracy
        assert re.search(rf"^{row.unit} +{row.accuracy:.1%} .* {row.balanced_accuracy:.1%} ",
                         table, re.MULTILINE), row.unit


def test_a_selection_that_reads_sampling_cannot_be_measured_on_written_pairs(capsys):
    assert cli.main(["--limit", "1", "--select", "entropy"]) == 2
    assert "cannot be measured on written pairs" in capsys.readouterr().err


def test_summaries_count_per_unit_in_order():
    def v(unit: str, right: bool) -> PairVerdict:
        return PairVerdict("p", unit, True, right, False, "")

    rows = summarise([v("answer", True), v("caption", True), v("caption", False)])
    assert [(r.unit, r.right, r.total) for r in rows] == [("caption", 1, 2), ("answer", 1, 1)]
    assert rows[0].accuracy == 0.5 and rows[0].ci95[0] < 0.5 < rows[0].ci95[1]


def _shipped(path: Path) -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [(r["id"], r["conversations"][0]["value"]) for r in rows]


def test_the_splits_are_the_ones_the_recipe_trained_and_shipped_beside():
    """The pairs are made from the same puzzles as the shipped splits (validation for
    choosing, test for reporting once), drawn again from their seed."""
    shipped_val = _shipped(demo_dir() / DEMO_VALIDATION)
    shipped_test = _shipped(demo_dir() / DEMO_TEST)[:50]
    val = recipe_puzzles("val", 0, len(shipped_val))
    test = recipe_puzzles("test", 0, len(shipped_test))
    assert [(p.id, p.question) for p in val] == shipped_val
    assert [(p.id, p.question) for p in test] == shipped_test
    assert {p.question for p in recipe_puzzles("test", 7, 50)} != {
        p.question for p in recipe_puzzles("test", 0, 50)}


def test_a_missing_model_is_one_line_not_a_traceback(capsys, tmp_path):
    assert cli.main(["--model", str(tmp_path / "missing.gguf"), "--limit", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("judge_pairs: ") and "missing.gguf" in err and "Traceback" not in err


def test_a_pointwise_selection_is_also_scored_one_candidate_at_a_time():
    """Balanced accuracy: right candidates called right (score above 0.5) and wrong ones
    called wrong, each class counted alone, whatever the pair's order says."""
    def v(right: float, wrong: float) -> PairVerdict:
        return PairVerdict("p", "caption", True, right > wrong, False, "", (right, wrong))

    # always high scores: every pair ordered right, but every wrong one called right
    (high,) = summarise([v(0.9, 0.8), v(0.95, 0.7)])
    assert high.accuracy == 1.0 and high.balanced_accuracy == 0.5
    (mixed,) = summarise([v(0.9, 0.1), v(0.6, 0.4), v(0.3, 0.2), v(0.7, 0.9)])
    assert (mixed.right_called, mixed.wrong_called, mixed.scored) == (3, 3, 4)
    assert mixed.balanced_accuracy == 0.75
    low, high_end = mixed.balanced_ci95
    assert low < 0.75 < high_end
    (pairwise,) = summarise([PairVerdict("p", "caption", True, True, False, "1")])
    assert pairwise.balanced_accuracy is None and pairwise.balanced_ci95 is None
