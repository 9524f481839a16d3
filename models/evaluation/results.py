"""What an evaluation produces: per-question results, per-strategy summaries, the report."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from stagewise.models.evaluation.judge_accuracy import ANSWER_UNIT, JudgeCall
from stagewise.models.evaluation.stats import PairedDifference, paired_difference, wilson_interval
from stagewise.models.inference.sampling_settings import GREEDY as GREEDY_SAMPLING
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.reasoning.selections import SELECTIONS
from stagewise.models.reasoning.strategies import STRATEGIES, default_selection
from stagewise.models.reasoning.strategies.stage import StageStrategy
from stagewise.models.stages import STAGES

__all__ = [
    "BASELINE",
    "GREEDY",
    "SINGLE",
    "EvalConfig",
    "EvalReport",
    "EvalStatus",
    "FollowUpResult",
    "FollowUpTally",
    "ItemResult",
    "StrategyReport",
    "make_configs",
    "strategy_names",
]

GREEDY = "greedy"
"""One pass that always takes the likeliest token: what every search is measured against."""
SINGLE = "single"
"""One sampled pass (stage-level search at beam 1)."""
BASELINE = GREEDY
"""The pass the others are compared with (the sampled single pass when greedy was not run)."""


def strategy_names() -> tuple[str, ...]:
    """What ``stagewise eval`` compares, in this order: a greedy pass, a sampled single pass
    and every registered search strategy."""
    return (GREEDY, SINGLE, *STRATEGIES.names())

EvalStatus = Literal["finished", "cancelled"]
_UNITS = (*(s.value for s in STAGES), ANSWER_UNIT)


@dataclass(frozen=True)
class EvalConfig:
    """One strategy as evaluated.

    Attributes:
        name: How tables name it: "greedy" (one pass, always the likeliest token),
            "single" (one sampled pass: stage-level search at beam 1), or a strategy's name,
            with its selection's when several selections are compared ("stage+logprob").
        strategy: The search strategy it runs.
        beam: Candidates per segment.
        select: How a candidate is chosen (meaningless at beam 1).
        greedy: Decode greedily instead of with the base settings' sampling.
        cutoff: Retrace's cutoff for this selection, when it was calibrated (None: the
            base settings' or the selection's default).
    """

    name: str
    strategy: str
    beam: int
    select: str
    greedy: bool = False
    cutoff: float | None = None

    @property
    def chooses(self) -> bool:
        """Whether its selection chooses among candidates (not a single pass)."""
        return self.beam > 1 or not STRATEGIES.get(self.strategy).uses_beam

    def settings(self, base: SearchSettings, seed: int) -> SearchSettings:
        """``base`` with this strategy, its beam and selection, and ``seed``."""
        sampling = GREEDY_SAMPLING if self.greedy else base.sampling
        cutoff = base.retrace_cutoff if self.cutoff is None else self.cutoff
        return replace(base, strategy=self.strategy, beam=self.beam, select=self.select,
                       seed=seed, sampling=sampling, retrace_cutoff=cutoff)


def make_configs(names: Iterable[str], beam: int,
                 selects: str | Sequence[str] | None = None) -> tuple[EvalConfig, ...]:
    """The strategies named, each once, in the order given, each search with every
    selection in ``selects`` (a strategy that needs a pointwise selection skips pairwise
    ones); without ``selects``, each search with its default selection.

    Raises:
        ValueError: A name is not one of :func:`strategy_names`, a selection is unknown, or a
            strategy has no selection it can use.
    """
    chosen = [selects] if isinstance(selects, str) else list(selects or ())
    for select in chosen:
        if select not in SELECTIONS:
            raise ValueError(f"unknown selection {select!r}: use "
                             f"{', '.join(SELECTIONS.names())}")
    known = strategy_names()
    configs: dict[str, EvalConfig] = {}
    stage = StageStrategy.name
    for name in names:
        if name not in known:
            raise ValueError(f"unknown strategy {name!r}: use {', '.join(known)}")
        if name in (GREEDY, SINGLE):
            select = chosen[0] if chosen else default_selection(stage)
            configs[name] = EvalConfig(name, stage, 1, select, greedy=name == GREEDY)
            continue
        selects = chosen or [default_selection(name)]
        usable = [select for select in selects
                  if not (STRATEGIES.get(name).pointwise_only
                          and SELECTIONS.get(select).pairwise)]
        if not usable:
            raise ValueError(f"{name} needs a selection that scores each candidate on its "
                             f"own; give one of "
                             f"{', '.join(s.name for s in SELECTIONS if not s.pairwise)}")
        for select in usable:
            key = name if len(chosen) < 2 else f"{name}+{select}"
            configs[key] = EvalConfig(key, name, beam, select)
    return tuple(configs.values())


@dataclass(frozen=True)
class FollowUpResult:
    """A strategy's answer to one follow-up, asked after the question it follows.

    Attributes:
        question: The follow-up as asked.
        prediction: The conclusion it gave ("" after an error).
        correct: Whether it is right.
        seconds: Wall time of its run.
        error: Why it failed ("" if it did not).
    """

    question: str
    prediction: str
    correct: bool
    seconds: float
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"question": self.question, "prediction": self.prediction,
                                "correct": self.correct, "seconds": round(self.seconds, 4)}
        if self.error:
            data["error"] = self.error
        return data


@dataclass(frozen=True)
class FollowUpTally:
    """Follow-ups over a strategy's questions: how often the second answer was right, and
    how often where the first was right too (what a follow-up can fairly be asked)."""

    asked: int
    right: int
    first_right: int
    right_after_right: int

    @property
    def rate_after_right(self) -> float:
        return self.right_after_right / self.first_right if self.first_right else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        """The 95% Wilson interval of :attr:`rate_after_right`."""
        return wilson_interval(self.right_after_right, self.first_right)


@dataclass(frozen=True)
class ItemResult:
    """One strategy's answer to one question.

    Attributes:
        item_id: The question's id.
        kind: The question's kind ("" if none).
        strategy: The strategy's name.
        prediction: The conclusion it gave ("" after an error).
        correct: Whether it is right (False after an error).
        seconds: Wall time of the run.
        tokens: Tokens generated for candidates.
        error: Why the question failed ("" if it did not).
        judge: The selection's comparisons of a right and a wrong candidate.
        unread: The judge's verdicts that named no response (read as the reference reads
            them).
        follow_ups: The answers to the question's follow-ups, asked in turn after it.
    """

    item_id: str
    kind: str
    strategy: str
    prediction: str
    correct: bool
    seconds: float
    tokens: int
    error: str = ""
    judge: tuple[JudgeCall, ...] = ()
    unread: int = 0
    follow_ups: tuple[FollowUpResult, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.item_id, "kind": self.kind, "strategy": self.strategy,
            "prediction": self.prediction, "correct": self.correct,
            "seconds": round(self.seconds, 4), "tokens": self.tokens,
        }
        if self.error:
            data["error"] = self.error
        if self.follow_ups:
            data["follow_ups"] = [f.to_json() for f in self.follow_ups]
        return data


@dataclass(frozen=True)
class StrategyReport:
    """One strategy over all questions done."""

    config: EvalConfig
    items: tuple[ItemResult, ...]

    @property
    def n(self) -> int:
        return len(self.items)

    @property
    def correct(self) -> int:
        return sum(r.correct for r in self.items)

    @property
    def accuracy(self) -> float:
        """The fraction right (0 when no question was done)."""
        return self.correct / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        """The 95% Wilson interval of the accuracy."""
        return wilson_interval(self.correct, self.n)

    @property
    def errors(self) -> int:
        return sum(bool(r.error) for r in self.items)

    @property
    def seconds_per_question(self) -> float:
        return sum(r.seconds for r in self.items) / self.n if self.n else 0.0

    @property
    def tokens_per_question(self) -> float:
        return sum(r.tokens for r in self.items) / self.n if self.n else 0.0

    def by_kind(self) -> dict[str, tuple[int, int]]:
        """(right, questions) per question kind, kinds sorted; "" for items without one."""
        tally: dict[str, list[int]] = {}
        for r in self.items:
            counts = tally.setdefault(r.kind, [0, 0])
            counts[0] += r.correct
            counts[1] += 1
        return {kind: (c[0], c[1]) for kind, c in sorted(tally.items())}

    def judge_by_unit(self) -> dict[str, tuple[int, int]]:
        """(right picks, verdicts between a right and a wrong candidate) per unit."""
        tally: dict[str, list[int]] = {}
        for r in self.items:
            for call in r.judge:
                counts = tally.setdefault(call.unit, [0, 0])
                counts[0] += call.picked_right
                counts[1] += 1
        return {u: (tally[u][0], tally[u][1]) for u in _UNITS if u in tally}

    def follow_up_tally(self) -> FollowUpTally | None:
        """The first follow-up of each question that has one (None when none has): how
        often it was answered right, overall and where the question before it was."""
        pairs = [(r.correct, r.follow_ups[0].correct) for r in self.items if r.follow_ups]
        if not pairs:
            return None
        return FollowUpTally(len(pairs), sum(b for _, b in pairs), sum(a for a, _ in pairs),
                             sum(a and b for a, b in pairs))

    @property
    def unread(self) -> int:
        """The judge's verdicts that named no response, over all questions."""
        return sum(r.unread for r in self.items)

    @property
    def judge_total(self) -> tuple[int, int]:
        """(right picks, verdicts that count) over all units."""
        units = self.judge_by_unit().values()
        return sum(r for r, _ in units), sum(n for _, n in units)

    def to_json(self) -> dict[str, Any]:
        low, high = self.interval
        right, counted = self.judge_total
        return {
            "strategy": self.config.name, "search": self.config.strategy,
            "beam": self.config.beam,
            "select": self.config.select if self.config.chooses else None,
            "retrace_cutoff": self.config.cutoff,
            "n": self.n, "correct": self.correct, "accuracy": round(self.accuracy, 4),
            "ci95": [round(low, 4), round(high, 4)], "errors": self.errors,
            "seconds_per_question": round(self.seconds_per_question, 4),
            "tokens_per_question": round(self.tokens_per_question, 2),
            "by_kind": {kind or "-": {"correct": c, "n": n, "accuracy": round(c / n, 4)}
                        for kind, (c, n) in self.by_kind().items()},
            "picks": None if not self.config.chooses else {
                "right": right, "counted": counted,
                "accuracy": round(right / counted, 4) if counted else None,
                "by_unit": {u: {"right": r, "counted": n}
                            for u, (r, n) in self.judge_by_unit().items()},
                "unread_verdicts": self.unread,
            },
            **({"follow_ups": {"asked": t.asked, "right": t.right, "first_right": t.first_right,
                               "right_after_right": t.right_after_right}}
               if (t := self.follow_up_tally()) else {}),
        }


@dataclass(frozen=True)
class EvalReport:
    """A whole evaluation: every strategy on the same questions.

    Attributes:
        strategies: One report per strategy, in the order run.
        total: Questions asked for.
        status: "cancelled" when the user stopped it; the report holds what was done.
        settings: The search settings shared by all strategies (seed: of question 0).
        calibration: How retrace's cutoff was chosen ("" when it was not calibrated).
    """

    strategies: tuple[StrategyReport, ...]
    total: int
    status: EvalStatus
    settings: SearchSettings
    calibration: str = ""

    @property
    def done(self) -> int:
        """Questions every strategy answered."""
        return self.strategies[0].n if self.strategies else 0

    def strategy(self, name: str) -> StrategyReport | None:
        return next((s for s in self.strategies if s.config.name == name), None)

    def comparisons(self) -> list[tuple[str, str, PairedDifference]]:
        """(strategy, baseline, difference) of each strategy against the greedy pass, or
        against the sampled single pass when greedy was not run."""
        base = self.strategy(BASELINE) or self.strategy(SINGLE)
        if base is None:
            return []
        return [(s.config.name, base.config.name, _paired(s.items, base.items))
                for s in self.strategies if s is not base]

    def to_json(self, *, items: bool = True) -> dict[str, Any]:
        """Everything, as plain JSON-ready data; ``items``: also every question's results."""
        s = self.settings
        data: dict[str, Any] = {
            "status": self.status, "questions": self.total, "done": self.done,
            "settings": {"seed": s.seed, "max_stage_tokens": s.max_stage_tokens,
                         "temperature": s.sampling.temperature, "top_p": s.sampling.top_p,
                         "top_k": s.sampling.top_k, "retrace_cutoff": s.retrace_cutoff,
                         "retrace_calibration": self.calibration},
            "strategies": [r.to_json() for r in self.strategies],
            "comparisons": [
                {"strategy": name, "baseline": base, "n": d.n,
                 "difference": round(d.difference, 4), "ci95": [round(d.low, 4),
                                                                round(d.high, 4)],
                 "wins": d.a_only, "losses": d.b_only, "verdict": d.verdict}
                for name, base, d in self.comparisons()
            ],
        }
        if items:
            data["items"] = [r.to_json() for s in self.strategies for r in s.items]
        return data


def _paired(a: Sequence[ItemResult], b: Sequence[ItemResult]) -> PairedDifference:
    """Strategies answer the questions in lockstep: results pair up by position."""
    n = min(len(a), len(b))
    return paired_difference([r.correct for r in a[:n]], [r.correct for r in b[:n]])
