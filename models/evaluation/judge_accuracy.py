"""How often the selection picks the right candidate, where one of two it compares is right.

A candidate is *right* when:

* it is a conclusion or a whole answer (best-of-N): its conclusion scores as correct
  against the gold answer (:func:`stagewise.models.evaluation.scoring.score`);
* it is any other stage: its content equals the gold stage's after normalisation (only
  when the gold stages are known, i.e. for LLaVA-CoT records).

For a pairwise selection a verdict counts only when exactly one of its two candidates is
right; it is a hit when the judge chose that one. For a pointwise selection every pair of a
right and a wrong candidate of one segment counts; it is a hit when the right one scored
higher (a tie is a miss: it picks by position, not by what is right).
"""

from __future__ import annotations

from dataclasses import dataclass

from stagewise.models.evaluation.data import EvalItem
from stagewise.models.evaluation.scoring import normalise, score
from stagewise.models.events import Candidate, SearchResult
from stagewise.models.reasoning.selections import SELECTIONS
from stagewise.models.stages import Stage, parse_answer

__all__ = ["ANSWER_UNIT", "JudgeCall", "candidate_content", "candidate_right", "judge_calls"]

ANSWER_UNIT = "answer"
"""The unit name of a whole answer (best-of-N), beside the stage names."""


@dataclass(frozen=True)
class JudgeCall:
    """One verdict between a right and a wrong candidate.

    Attributes:
        unit: The stage's name ("summary" ... "conclusion"), or "answer" for whole answers.
        picked_right: Whether the judge chose the right candidate.
    """

    unit: str
    picked_right: bool


def candidate_content(candidate: Candidate) -> str:
    """What a candidate says for its unit: a stage's content, or a whole answer's conclusion.

    A native model's candidate carries its tags; a prompted one's starts after the open tag
    the search wrote. Text without any tags is taken as it is, stripped.
    """
    text = candidate.text
    if candidate.unit is None:
        parsed = parse_answer(text)
        if parsed.conclusion or any(parsed.stages.values()):
            return parsed.conclusion
        return text.strip()
    stage = candidate.unit
    content = parse_answer(text).stages[stage]
    if not content:  # the open tag was written by the search, before the candidate
        content = parse_answer(stage.open_tag + text).stages[stage]
    return content or text.strip()


def candidate_right(candidate: Candidate, item: EvalItem) -> bool | None:
    """Whether a candidate is right for ``item``; None when that cannot be told."""
    content = candidate_content(candidate)
    if candidate.unit is None or candidate.unit is Stage.CONCLUSION:
        return score(content, item)
    gold = item.stages.get(candidate.unit, "")
    if not gold:
        return None
    return bool(normalise(content)) and normalise(content) == normalise(gold)


def judge_calls(result: SearchResult, item: EvalItem) -> tuple[JudgeCall, ...]:
    """The comparisons of a run's selection between a right and a wrong candidate."""
    chosen_by = SELECTIONS.find(result.select)
    if chosen_by is None:
        return ()
    if not chosen_by.pairwise:
        return _score_calls(result, item)
    if not result.verdicts:
        return ()
    segments: dict[int, dict[int, Candidate]] = {}
    for c in result.candidates:
        segments.setdefault(c.segment, {})[c.index] = c
    right: dict[tuple[int, int], bool | None] = {}

    def is_right(segment: int, index: int) -> bool | None:
        if (segment, index) not in right:
            candidate = segments.get(segment, {}).get(index)
            right[segment, index] = None if candidate is None else candidate_right(candidate,
                                                                                   item)
        return right[segment, index]

    calls = []
    for v in result.verdicts:
        first, second = is_right(v.segment, v.first), is_right(v.segment, v.second)
        if first is None or second is None or first == second:
            continue
        unit = v.unit.value if v.unit else ANSWER_UNIT
        calls.append(JudgeCall(unit, v.winner == (v.first if first else v.second)))
    return tuple(calls)


def _score_calls(result: SearchResult, item: EvalItem) -> tuple[JudgeCall, ...]:
    """Every (right, wrong) pair of scored candidates of a segment, as a comparison."""
    segments: dict[int, list[Candidate]] = {}
    for c in result.candidates:
        if c.score is not None:
            segments.setdefault(c.segment, []).append(c)
    calls = []
    for candidates in segments.values():
        judged = [(c, candidate_right(c, item)) for c in candidates]
        rights = [c for c, ok in judged if ok is True]
        wrongs = [c for c, ok in judged if ok is False]
        for good in rights:
            for bad in wrongs:
                unit = good.unit.value if good.unit else ANSWER_UNIT
                assert good.score is not None and bad.score is not None
                calls.append(JudgeCall(unit, good.score > bad.score))
    return tuple(calls)
