"""Run strategies side by side over evaluation questions on one model.

Question by question, every strategy answers before the next question starts, so that
whatever slows or disturbs the machine meanwhile hits all strategies alike. Every strategy
gets the same seed for a question (the base seed plus the question's index).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stagewise.models.errors import StagewiseError
from stagewise.models.evaluation.data import EvalItem
from stagewise.models.evaluation.follow_up_runs import ask_follow_ups
from stagewise.models.evaluation.judge_accuracy import judge_calls
from stagewise.models.evaluation.results import EvalConfig, EvalReport, ItemResult, StrategyReport
from stagewise.models.evaluation.scoring import score
from stagewise.models.events import AnswerFinished, SearchResult
from stagewise.models.inference.images import PreparedImage, load_image
from stagewise.models.reasoning.search_settings import SearchSettings

if TYPE_CHECKING:
    from stagewise.models.reasoning.search import StageSearch
    from stagewise.models.session import Session

__all__ = ["EvalProgress", "ProgressFn", "evaluate"]


@dataclass(frozen=True)
class EvalProgress:
    """Where an evaluation stands after a question.

    Attributes:
        done: Questions finished.
        total: Questions to do.
        item: The question just finished.
        results: Its results, one per strategy.
        running: (right, done) per strategy name so far.
        elapsed_s: Seconds since the evaluation started.
    """

    done: int
    total: int
    item: EvalItem
    results: tuple[ItemResult, ...]
    running: dict[str, tuple[int, int]]
    elapsed_s: float


ProgressFn = Callable[[EvalProgress], None]


def evaluate(session: Session, items: Sequence[EvalItem],
             configs: Sequence[EvalConfig], *, cancel: threading.Event | None = None,
             progress: ProgressFn | None = None, base_settings: SearchSettings | None = None,
             calibration: str = "") -> EvalReport:
    """Answer every question with every strategy and score the conclusions.

    Args:
        session: The model the searches run on (its second model too, for a selection
            that scores with one).
        items: The questions.
        configs: The strategies, in the order each question runs them.
        cancel: Set it to stop; the question in progress is dropped for all strategies,
            and the report (status "cancelled") holds the questions done before it.
        progress: Called after each question.
        base_settings: Settings shared by the strategies (token budget, sampling, seed,
            retrace's cutoff, the second model).
        calibration: How retrace's cutoff was chosen, for the report.

    Returns:
        The report. A question that fails (an unreadable image, an engine error) counts
        as wrong for the strategies it failed in, with the error noted.

    Raises:
        StagewiseError: No strategy was given, or one does not fit the engine.
    """
    base = base_settings or SearchSettings()
    cancel = cancel or threading.Event()
    if not configs:
        raise StagewiseError("no strategy to evaluate")
    for config in configs:  # a beam the engine cannot hold fails here, not per question
        session.search(config.settings(base, base.seed))
    rows: dict[str, list[ItemResult]] = {c.name: [] for c in configs}
    status = "finished"
    start = time.perf_counter()
    for index, item in enumerate(items):
        results = None if cancel.is_set() else _one_item(session, item, index, configs, base,
                                                        cancel)
        if results is None:
            status = "cancelled"
            break
        for result in results:
            rows[result.strategy].append(result)
        if progress:
            running = {name: (sum(r.correct for r in done), len(done))
                       for name, done in rows.items()}
            progress(EvalProgress(index + 1, len(items), item, results, running,
                                  time.perf_counter() - start))
    return EvalReport(
        tuple(StrategyReport(c, tuple(rows[c.name])) for c in configs),
        len(items), status, base, calibration,
    )


def _one_item(session: Session, item: EvalItem, index: int,
              configs: Sequence[EvalConfig], base: SearchSettings, cancel: threading.Event
              ) -> tuple[ItemResult, ...] | None:
    """Every strategy's result for one question; None when cancelled meanwhile."""
    try:
        image = load_image(item.image)
    except StagewiseError as error:
        return tuple(_failed(item, c, str(error), 0.0) for c in configs)
    results = []
    for config in configs:
        search = session.search(config.settings(base, base.seed + index))
        t0 = time.perf_counter()
        try:
            answer = _last_result(search, image, item.question, cancel)
        except StagewiseError as error:
            results.append(_failed(item, config, str(error), time.perf_counter() - t0))
            continue
        seconds = time.perf_counter() - t0
        if answer.status == "cancelled":
            return None
        follow = ask_follow_ups(session, item, config.settings(base, base.seed + index),
                                image, answer, cancel)
        if follow is None:
            return None
        results.append(ItemResult(
            item.id, item.kind, config.name, answer.conclusion,
            score(answer.conclusion, item), seconds, answer.timings.generated_tokens,
            judge=judge_calls(answer, item),
            unread=sum(v.unread for v in answer.verdicts), follow_ups=follow,
        ))
    return tuple(results)


def _last_result(search: StageSearch, image: PreparedImage, question: str,
                 cancel: threading.Event) -> SearchResult:
    result = None
    for event in search.run(image, question, cancel):
        if isinstance(event, AnswerFinished):
            result = event.result
    if result is None:  # the search always ends with one; this guards the contract
        raise StagewiseError("the search ended without an answer")
    return result


def _failed(item: EvalItem, config: EvalConfig, error: str, seconds: float) -> ItemResult:
    return ItemResult(item.id, item.kind, config.name, "", False, seconds, 0, error=error)
