"""A benchmark's figures as VLMEvalKit computes them, per strategy: JSON, text and its CSV.

From graded answers (:mod:`~stagewise.models.evaluation.grader`):

* multiple choice: VLMEvalKit's ``report_acc`` (``vlmeval/dataset/utils/multiple_choice.py``):
  the share right overall and per ``l2-category`` and ``category`` (MMBench's abbreviated),
  one row per ``split``, as fractions. With CircularEval (``mcq_circular_eval``) a question
  counts once, right only when every rotated copy (the rows of its group, index modulo
  1,000,000) is right; the question is the row whose index is its group, and it gives the
  category. Here a group counts only when all its rows read were answered.
* HallusionBench: ``Hallusion_rating`` (``vlmeval/dataset/utils/yorn.py``): aAcc, the share of
  answers right; fAcc, the share of figures all of whose questions are right (grouped by
  ``l2-category``, set and figure id); qAcc, the share of questions right on every figure
  (grouped by ``l2-category``, set and question id); overall, per ``category`` and per
  ``l2-category``, in percent. The ids are the 4th, 5th and 6th ``_``-separated parts of the
  index.
* MathVista: ``MathVista_acc`` (``vlmeval/dataset/utils/mathvista.py``): total, answers read
  without the grader ("prefetch"), right, and their rates in percent, overall, per ``task``
  and per skill (``skills``, a Python list).
* MMVet: ``MMVet_acc`` (``vlmeval/dataset/utils/mmvet.py``): the mean score in percent per
  capability (rec, ocr, know, gen, spat, math: those the ``category`` names) and overall;
  and, in a second table, per combination of capabilities.
* anything else (a jsonl file, a TSV without VLMEvalKit rules): ``report_acc``'s shape, the
  question kind as its category.

In the JSON report each strategy gains ``circular_accuracy`` and ``circular_questions``
(CircularEval), ``aAcc``, ``fAcc`` and ``qAcc`` (HallusionBench), ``prefetch_rate``
(MathVista) or ``mmvet_score`` (MMVet), all as fractions like ``accuracy``, and
``undecided`` (answers no rule or grader could read); each question's result gains
``extracted`` (and ``grader_output``, ``points`` where they apply). The CSV has VLMEvalKit's
columns and scales, after a ``strategy`` column.
"""

from __future__ import annotations

import ast
import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stagewise.models.evaluation.benchmarks import Benchmark
from stagewise.models.evaluation.data import EvalItem
from stagewise.models.evaluation.grader import Grade, GradedReport
from stagewise.models.evaluation.results import ItemResult, StrategyReport
from stagewise.models.evaluation.vlmeval_rules import circular_group

__all__ = ["MMB_ABBREVIATIONS", "MMVET_CAPABILITIES", "BenchmarkFigures", "figures"]

MMB_ABBREVIATIONS = {
    "coarse_perception": "CP",
    "finegrained_perception (instance-level)": "FP-S",
    "finegrained_perception (cross-instance)": "FP-C",
    "logic_reasoning": "LR",
    "relation_reasoning": "RR",
    "attribute_reasoning": "AR",
}
"""MMBench's ability names as ``report_acc`` heads its columns (``MMB_abbrs``)."""

MMVET_CAPABILITIES = ("rec", "ocr", "know", "gen", "spat", "math")
"""MMVet's capabilities, as ``MMVet_acc`` looks for them in a ``category``."""

Row = dict[str, Any]


@dataclass(frozen=True)
class _Answer:
    """One graded answer with its question."""

    item: EvalItem
    result: ItemResult
    grade: Grade | None

    @property
    def hit(self) -> bool:
        return self.result.correct

    @property
    def points(self) -> float:
        if self.grade is not None and self.grade.points is not None:
            return self.grade.points
        return float(self.hit)

    def field(self, name: str) -> str:
        return self.item.fields.get(name, "")


@dataclass(frozen=True)
class BenchmarkFigures:
    """Per strategy, VLMEvalKit's figures and its score tables.

    Attributes:
        benchmark: The benchmark (None for a jsonl file).
        rules: The rules the answers were read by ("mcq", "yes-no", "mathvista", "mmvet",
            or "" for Stagewise's).
        grader: The grader's name ("" without one).
        summary: Per strategy, the figures the JSON report adds (see the module docstring).
        tables: Per strategy, the rows of VLMEvalKit's score CSV.
        fine: Per strategy, MMVet's second table (per combination of capabilities).
    """

    benchmark: Benchmark | None
    rules: str
    grader: str
    summary: dict[str, Row]
    tables: dict[str, list[Row]]
    fine: dict[str, list[Row]]

    @property
    def circular(self) -> bool:
        return self.rules == "mcq" and self.benchmark is not None and self.benchmark.circular

    def add_to_json(self, payload: dict[str, Any], graded: GradedReport) -> None:
        """Add the figures to a report's JSON (``EvalReport.to_json``) in place."""
        payload["benchmark"] = {
            "name": self.benchmark.label if self.benchmark else None,
            "rules": f"VLMEvalKit ({self.rules})" if self.rules else "Stagewise",
            "circular": self.circular, "grader": self.grader or None,
        }
        for strategy in payload.get("strategies", []):
            strategy.update(self.summary.get(strategy["strategy"], {}))
        for item in payload.get("items", []):
            marks = graded.grades.get((item["strategy"], item["id"]))
            if marks is None:
                continue
            item["extracted"] = marks.extracted or None
            if marks.asked:
                item["grader_output"] = marks.output
            if marks.points is not None:
                item["points"] = marks.points

    def lines(self) -> list[str]:
        """The figures as text lines for the terminal report (none without VLMEvalKit rules)."""
        if not self.rules:
            return []
        name = self.benchmark.label if self.benchmark else "benchmark"
        grader = (f"answers matching could not read graded by {self.grader}" if self.grader
                  else "no grader: answers matching could not read count as wrong")
        lines = ["", f"VLMEvalKit's figures for {name} ({grader}):"]
        for strategy, row in self.summary.items():
            words = _words(row) or ["accuracy as in the table above"]
            lines.append(f"  {strategy}: " + " · ".join(words))
        return lines

    def write_csv(self, path: Path) -> list[Path]:
        """Write the score table (MMVet: and ``<stem>_fine.csv`` beside it).

        Returns:
            The files written.

        Raises:
            OSError: A file cannot be written.
        """
        written = [_write(path, self.tables)]
        if any(self.fine.values()):
            written.append(_write(path.with_name(f"{path.stem}_fine{path.suffix or '.csv'}"),
                                  self.fine))
        return written


def figures(graded: GradedReport, items: Sequence[EvalItem],
            benchmark: Benchmark | None) -> BenchmarkFigures:
    """VLMEvalKit's figures of a graded report (see the module docstring).

    Args:
        graded: The graded report.
        items: Its questions.
        benchmark: The benchmark they come from (None for a jsonl file).
    """
    rules = next((item.benchmark for item in items if item.benchmark), "")
    by_id = {item.id: item for item in items}
    sizes: dict[int, int] = {}  # CircularEval: rows per group among the questions read
    if rules == "mcq" and benchmark is not None and benchmark.circular:
        for item in items:
            group = circular_group(item.fields["index"])
            sizes[group] = sizes.get(group, 0) + 1
    summary: dict[str, Row] = {}
    tables: dict[str, list[Row]] = {}
    fine: dict[str, list[Row]] = {}
    for strategy in graded.report.strategies:
        answers = _answers(strategy, by_id, graded)
        name = strategy.config.name
        summary[name], tables[name], fine[name] = _one_strategy(rules, sizes, answers)
        if rules:
            summary[name]["undecided"] = sum(a.grade is not None and a.grade.undecided
                                             for a in answers)
    return BenchmarkFigures(benchmark, rules, graded.grader, summary, tables, fine)


def _answers(strategy: StrategyReport, by_id: dict[str, EvalItem],
             graded: GradedReport) -> list[_Answer]:
    name = strategy.config.name
    return [_Answer(by_id[r.item_id], r, graded.grades.get((name, r.item_id)))
            for r in strategy.items if r.item_id in by_id]


def _one_strategy(rules: str, sizes: dict[int, int], answers: list[_Answer]
                  ) -> tuple[Row, list[Row], list[Row]]:
    if rules == "yes-no":
        table = _hallusion(answers)
        overall = table[0]
        return ({"aAcc": _fraction(overall["aAcc"]), "fAcc": _fraction(overall["fAcc"]),
                 "qAcc": _fraction(overall["qAcc"])}, table, [])
    if rules == "mathvista":
        table = _mathvista(answers)
        return {"prefetch_rate": _fraction(table[0]["prefetch_rate"])}, table, []
    if rules == "mmvet":
        table, fine = _mmvet(answers)
        return {"mmvet_score": _fraction(table[-1]["acc"])}, table, fine
    if sizes:
        groups = _circular(answers, sizes)
        hits = [hit for _, hit in groups]
        summary = {"circular_accuracy": round(sum(hits) / len(hits), 4) if hits else None,
                   "circular_questions": len(hits)}
        return summary, _report_acc([(a, hit) for a, hit in groups]), []
    kind_as_category = not rules  # Stagewise's rules: a jsonl's kinds
    return {}, _report_acc([(a, a.hit) for a in answers], kind_as_category), []


def _circular(answers: list[_Answer], sizes: dict[int, int]) -> list[tuple[_Answer, bool]]:
    """Each CircularEval question, with its hit: the question's row (whose index is its
    group) and every rotated copy read must have been answered (a failed run counts as a
    wrong answer)."""
    groups: dict[int, list[_Answer]] = {}
    for answer in answers:
        groups.setdefault(circular_group(answer.field("index")), []).append(answer)
    done = []
    for group, members in groups.items():
        main = next((a for a in members if a.field("index") == str(group)), None)
        if main is not None and len(members) == sizes.get(group):
            done.append((main, all(a.hit for a in members)))
    return done


def _report_acc(scored: list[tuple[_Answer, bool]], kind_as_category: bool = False
                ) -> list[Row]:
    """``report_acc``: per split, the share right overall, per l2-category and category."""
    splits = sorted({a.field("split") or "none" for a, _ in scored}) or ["none"]
    rows = []
    for split in splits:
        here = [(a, hit) for a, hit in scored if (a.field("split") or "none") == split]
        row: Row = {"split": split, "Overall": _mean([hit for _, hit in here])}
        for column in ("l2-category", "category"):
            values = {_category(a, column, kind_as_category) for a, _ in scored} - {""}
            for value in sorted(values):
                hits = [hit for a, hit in here if _category(a, column, kind_as_category) == value]
                row[MMB_ABBREVIATIONS.get(value, value)] = _mean(hits)
        rows.append(row)
    return rows


def _category(answer: _Answer, column: str, kind_as_category: bool) -> str:
    if kind_as_category:
        return answer.item.kind if column == "category" else ""
    return answer.field(column)


def _hallusion(answers: list[_Answer]) -> list[Row]:
    """``Hallusion_rating``: aAcc, fAcc, qAcc overall, per category and per l2-category."""
    rows = [_hallusion_row("Overall", answers)]
    for column in ("category", "l2-category"):
        for value in sorted({a.field(column) for a in answers} - {""}):
            rows.append(_hallusion_row(value, [a for a in answers if a.field(column) == value]))
    return rows


def _hallusion_row(split: str, answers: list[_Answer]) -> Row:
    def grouped(part: int) -> float | None:
        groups: dict[str, list[bool]] = {}
        for a in answers:
            ids = a.field("index").split("_")
            groups.setdefault(f"{a.field('l2-category')}_{ids[3]}_{ids[part]}", []).append(a.hit)
        return _percent([all(hits) for hits in groups.values()])

    return {"split": split, "aAcc": _percent([a.hit for a in answers]), "fAcc": grouped(4),
            "qAcc": grouped(5)}


def _mathvista(answers: list[_Answer]) -> list[Row]:
    """``MathVista_acc``: per task and skill, total, prefetched, right and their rates."""
    tally: dict[str, list[int]] = {"Overall": [0, 0, 0]}
    for a in answers:
        prefetched = a.grade is not None and a.grade.asked == 0 and bool(a.grade.extracted)
        for key in ("Overall", *_skills(a.field("skills")), a.field("task") or None):
            if key is None:
                continue
            counts = tally.setdefault(key, [0, 0, 0])
            counts[0] += 1
            counts[1] += prefetched
            counts[2] += a.hit
    return [{"Task&Skill": key, "tot": tot, "prefetch": fetched, "hit": hit,
             "prefetch_rate": 100 * fetched / tot, "acc": 100 * hit / tot}
            for key, (tot, fetched, hit) in tally.items() if tot]


def _skills(cell: str) -> list[str]:
    """A ``skills`` cell: a Python list, or one skill (``MathVista_acc``)."""
    try:
        value = ast.literal_eval(cell)
    except (ValueError, SyntaxError):
        return [cell] if cell else []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def _mmvet(answers: list[_Answer]) -> tuple[list[Row], list[Row]]:
    """``MMVet_acc``: mean score per capability and overall; per combination and overall."""
    capabilities: dict[str, list[float]] = {c: [] for c in MMVET_CAPABILITIES}
    combinations: dict[str, list[float]] = {}
    for a in answers:
        category = a.field("category")
        for capability in MMVET_CAPABILITIES:
            if capability in category:
                capabilities[capability].append(a.points)
        combinations.setdefault(category.replace(",", "_"), []).append(a.points)
    every = [a.points for a in answers]
    table = [{"Category": c, "tot": len(s), "acc": _percent(s)} for c, s in capabilities.items()]
    table.append({"Category": "Overall", "tot": len(every), "acc": _percent(every)})
    fine = [{"Category": c, "tot": len(s), "acc": _percent(s)} for c, s in combinations.items()]
    fine.append({"Category": "Overall", "tot": len(every), "acc": _percent(every)})
    return table, fine


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _percent(values: Sequence[float]) -> float | None:
    mean = _mean(values)
    return None if mean is None else 100 * mean


def _fraction(percent: float | None) -> float | None:
    return None if percent is None else round(percent / 100, 4)


def _words(row: Row) -> list[str]:
    words = []
    for key, value in row.items():
        if key == "circular_accuracy":
            words.append("circular accuracy " + ("-" if value is None else f"{100 * value:.1f}%"))
        elif key == "circular_questions":
            words.append(f"{value} questions with all their rotated copies")
        elif key in ("aAcc", "fAcc", "qAcc", "prefetch_rate"):
            label = "read without the grader" if key == "prefetch_rate" else key
            words.append(f"{label} " + ("-" if value is None else f"{100 * value:.1f}%"))
        elif key == "mmvet_score":
            words.append("score " + ("-" if value is None else f"{100 * value:.1f}"))
        elif key == "undecided" and value:
            words.append(f"{value} answers undecided (counted wrong)")
    return words


def _write(path: Path, tables: dict[str, list[Row]]) -> Path:
    columns: list[str] = ["strategy"]
    for rows in tables.values():
        for row in rows:
            columns += [key for key in row if key not in columns]
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, columns, restval="", lineterminator="\n")
        writer.writeheader()
        for strategy, rows in tables.items():
            for row in rows:
                writer.writerow({"strategy": strategy,
                                 **{k: _cell(v) for k, v in row.items()}})
    return path


def _cell(value: object) -> object:
    return "" if value is None else value
