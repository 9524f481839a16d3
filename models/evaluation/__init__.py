"""Measure how well strategies answer: accuracy on a question set, side by side.

``stagewise eval`` reads questions (:mod:`~models.evaluation.data`), runs each strategy
on each question over one engine (:func:`models.evaluation.runner.evaluate`), scores the
conclusions (:mod:`~models.evaluation.scoring`), and reports accuracy with 95% intervals,
paired differences against a single pass (:mod:`~models.evaluation.stats`), how often the
judge picked the right candidate (:mod:`~models.evaluation.judge_accuracy`) and a breakdown
by question kind (:mod:`~models.evaluation.results`, :mod:`~models.evaluation.report`).

Importing this package does not load llama.cpp; :mod:`~models.evaluation.runner` does.
Qt-free.
"""

from __future__ import annotations

from models.evaluation.data import EvalDataError, EvalItem, item_kind, read_items
from models.evaluation.judge_accuracy import JudgeCall, candidate_content, judge_calls
from models.evaluation.report import format_report
from models.evaluation.results import (
    BASELINE,
    STRATEGY_NAMES,
    EvalConfig,
    EvalReport,
    ItemResult,
    StrategyReport,
    make_configs,
)
from models.evaluation.scoring import answer_letter, is_correct, normalise, options, score
from models.evaluation.stats import PairedDifference, paired_difference, wilson_interval

__all__ = [
    "BASELINE",
    "STRATEGY_NAMES",
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
    "wilson_interval",
]
