"""Measure how well strategies answer: accuracy on a question set, side by side.

``stagewise eval`` reads questions (:mod:`~stagewise.models.evaluation.data`), runs each
strategy on each question over one session (:func:`stagewise.models.evaluation.runner.evaluate`),
scores the conclusions (:mod:`~stagewise.models.evaluation.scoring`), and reports accuracy with
95% intervals, paired differences against the greedy pass
(:mod:`~stagewise.models.evaluation.stats`), how often the selection picked the right candidate
(:mod:`~stagewise.models.evaluation.judge_accuracy`) and a breakdown by question kind
(:mod:`~stagewise.models.evaluation.results`, :mod:`~stagewise.models.evaluation.report`).

A VLMEvalKit benchmark TSV (:mod:`~stagewise.models.evaluation.vlmevalkit`,
:mod:`~stagewise.models.evaluation.benchmarks`) is asked and scored by VLMEvalKit's rules
(:mod:`~stagewise.models.evaluation.vlmeval_rules`,
:mod:`~stagewise.models.evaluation.vlmeval_scoring`); what they cannot read a local grader
model reads (:mod:`~stagewise.models.evaluation.grader`), and its figures (CircularEval,
aAcc/fAcc/qAcc, MathVista, MMVet) and score CSV come from
:mod:`~stagewise.models.evaluation.benchmark_figures`.

Importing this package does not load llama.cpp; :mod:`~stagewise.models.evaluation.runner` does.
Qt-free.
"""

from __future__ import annotations

from stagewise.models.evaluation.data import EvalDataError, EvalItem, item_kind, read_items
from stagewise.models.evaluation.judge_accuracy import JudgeCall, candidate_content, judge_calls
from stagewise.models.evaluation.report import format_report
from stagewise.models.evaluation.results import (
    BASELINE,
    GREEDY,
    SINGLE,
    EvalConfig,
    EvalReport,
    ItemResult,
    StrategyReport,
    make_configs,
    strategy_names,
)
from stagewise.models.evaluation.scoring import answer_letter, is_correct, normalise, options, score
from stagewise.models.evaluation.stats import PairedDifference, paired_difference, wilson_interval

__all__ = [
    "BASELINE",
    "GREEDY",
    "SINGLE",
    "EvalConfig",
    "EvalDataError",
    "EvalItem",
    "EvalReport",
    "ItemResult",
    "JudgeCall",
    "PairedDifference",
    "StrategyReport",
    "answer_letter",
    "candidate_content",
    "format_report",
    "is_correct",
    "item_kind",
    "judge_calls",
    "make_configs",
    "normalise",
    "options",
    "paired_difference",
    "read_items",
    "score",
    "strategy_names",
    "wilson_interval",
]
