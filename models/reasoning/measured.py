"""What the search's own judgements have measured to be worth, in one place.

Every figure here was measured on the built-in demo model (models/data/demo) by the command
given beside it, and the README's tables show the same numbers. They say how far the model's
own choices and its own certainty can be trusted *on the demo*; no other model has been
measured, and the front ends say so when another model answers.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CONFIDENCE_COMMAND", "LEVEL_RIGHT", "PICKS_RIGHT", "SELECTION_COMMAND",
           "LevelRecord", "SelectionRecord", "level_reliability", "picks_right",
           "selection_reliability"]

SELECTION_COMMAND = (
    "stagewise eval --demo --limit 500 --strategy greedy,stage "
    "--select judge,verdict,selfcheck,logprob,entropy --max-stage-tokens 256 --threads 1")
"""The run that measured :data:`PICKS_RIGHT` (README, "Choosing a candidate")."""

@dataclass(frozen=True)
class SelectionRecord:
    """How often a selection chose right on the demo.

    Attributes:
        select: The selection's name.
        picks_right: The share of its choices between a right and a wrong candidate that
            went to the right one.
    """

    select: str
    picks_right: float


PICKS_RIGHT: tuple[SelectionRecord, ...] = (
    SelectionRecord("judge", 0.516),
    SelectionRecord("verdict", 0.451),
    SelectionRecord("selfcheck", 0.552),
    SelectionRecord("logprob", 0.612),
    SelectionRecord("entropy", 0.513),
)
"""How often each selection chose a right candidate where its set held a right and a wrong
one, summed over the caption and reasoning stages that differed, on the demo's first 500
held-out test puzzles at stage-level beam N=4 (the "picks right (test)" column of the
README's selection table; chance is 50%). ``prm`` and ``model`` need a second model and are
not measured on the demo."""


CONFIDENCE_COMMAND = "python bench/confidence.py --limit 500 --threads 1"
"""The run that measured :data:`LEVEL_RIGHT`."""


@dataclass(frozen=True)
class LevelRecord:
    """How answers with one confidence level fared in one kind of run.

    Attributes:
        run: The run: a strategy's name, or "greedy" or "single" for one pass.
        level: The confidence level.
        answers: How many answers had this level.
        right: The share of them that were right.
    """

    run: str
    level: str
    answers: int
    right: float


LEVEL_RIGHT: tuple[LevelRecord, ...] = (
    LevelRecord("greedy", "sure", 500, 0.582),
    LevelRecord("single", "sure", 500, 0.530),
    LevelRecord("stage", "sure", 470, 0.594),
    LevelRecord("stage", "unsure", 30, 0.400),
    LevelRecord("best-of-n", "sure", 164, 0.762),
    LevelRecord("best-of-n", "fairly sure", 117, 0.573),
    LevelRecord("best-of-n", "unsure", 219, 0.388),
)
"""How answers with each confidence level fared on the demo's first 500
held-out test puzzles (:data:`CONFIDENCE_COMMAND`, seed 0). Runs: ``"greedy"`` and
``"single"`` (beam 1, greedy and sampled: the level comes from the conclusion's token
probability), ``"stage"`` (stage-level beam N=4: agreement of four conclusions written after
one chosen reasoning) and ``"best-of-n"`` (N=4 whole answers). A level with no answers has no
entry: every single pass was "sure" (the demo copies its reasoning's result into the
conclusion with near certainty), so on a single pass the label tells nothing about being
right; agreement among best-of-N's independent answers does (76% right when all four agree,
39% when half or fewer do)."""


def picks_right(select: str) -> SelectionRecord | None:
    """What ``select`` measured on the demo, or None when it was not measured."""
    return next((r for r in PICKS_RIGHT if r.select == select), None)


def selection_reliability(select: str) -> str:
    """One sentence on how often ``select`` picked right on the demo, or that it was not
    measured."""
    record = picks_right(select)
    if record is None:
        return f"The {select} selection has not been measured on any model here."
    return (f"On the demo model's held-out puzzles the {select} selection chose right "
            f"{record.picks_right:.0%} of the time between a right and a wrong candidate "
            "(chance: 50%); no other model has been measured.")


def level_reliability(run: str, level: str) -> str:
    """One sentence on how often answers of this confidence ``level`` were right in runs
    like ``run`` ("single", "stage", "best-of-n") on the demo; "" when not measured."""
    record = next((r for r in LEVEL_RIGHT if (r.run, r.level) == (run, level)), None)
    if record is None:
        return ""
    return (f"On the demo's held-out puzzles, {record.answers} answers of this kind were "
            f"{level}, and {record.right:.0%} of them were right.")
