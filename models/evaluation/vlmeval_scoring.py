"""One answer read by VLMEvalKit's rules, before any LLM grader: right, wrong, or undecided.

:func:`read_answer` is what :func:`stagewise.models.evaluation.scoring.score` uses for an item
of a VLMEvalKit benchmark (its ``benchmark`` set). An undecided answer is one VLMEvalKit would
send to its LLM; without a grader it counts as wrong, as VLMEvalKit's ``exact_matching``
mode counts it.
"""

from __future__ import annotations

from dataclasses import dataclass

from stagewise.models.evaluation.data import EvalItem
from stagewise.models.evaluation.vlmeval_rules import (
    can_infer,
    mathvista_hit,
    mathvista_prefetch,
    yes_no,
)

__all__ = ["Reading", "item_options", "read_answer"]


@dataclass(frozen=True)
class Reading:
    """What the rules read from an answer.

    Attributes:
        extracted: The answer as scored (an option letter or ``"Z"``, ``"Yes"`` or
            ``"No"``, MathVista's answer); None when undecided.
        correct: Whether it is right (False when undecided).
    """

    extracted: str | None
    correct: bool

    @property
    def decided(self) -> bool:
        """Whether matching read it (else VLMEvalKit asks its LLM)."""
        return self.extracted is not None


def item_options(item: EvalItem) -> dict[str, str]:
    """A multiple-choice item's options by letter, in letter order (its non-empty option
    cells, as VLMEvalKit's ``build_choices`` takes them)."""
    return {column: text for column, text in sorted(item.fields.items())
            if len(column) == 1 and "A" <= column <= "Z" and text}


def read_answer(prediction: str, item: EvalItem) -> Reading:
    """Read ``prediction`` by the rules of ``item.benchmark`` (see the module docstring).

    * "mcq": :func:`~stagewise.models.evaluation.vlmeval_rules.can_infer` gives the option;
      right when it is the gold letter.
    * "yes-no": :func:`~stagewise.models.evaluation.vlmeval_rules.yes_no`; "Unknown" is
      undecided.
    * "mathvista": the prefetch of ``post_check``; what it does not take is undecided.
    * "mmvet": always undecided (only an LLM scores MMVet).
    """
    rules = item.benchmark
    gold = item.answers[0]
    if rules == "mcq":
        letter = can_infer(prediction, item_options(item))
        return Reading(letter, letter == gold)
    if rules == "yes-no":
        said = yes_no(prediction)
        return Reading(None, False) if said == "Unknown" else Reading(said, said == gold)
    if rules == "mathvista":
        taken = mathvista_prefetch(prediction, item.fields)
        return Reading(taken, taken is not None and mathvista_hit(taken, item.fields))
    if rules == "mmvet":
        return Reading(None, False)
    raise ValueError(f"no VLMEvalKit rules named {rules!r}")
