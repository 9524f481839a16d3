"""Follow-up questions about a puzzle's picture, asked after its first question.

A follow-up is the second turn of a conversation about one image: the first question, the
answer that goes back into the prompt (its conclusion, as the window and ``stagewise ask``
send it: :mod:`stagewise.models.reasoning.conversation`), then a short question that leans
on it. Three kinds, each with templated four-stage answers in the puzzles' style:

* ``and``: the same question about other objects ("How many red circles are there?" →
  "And the red squares?"; "What color is the circle at the top?" → "And the square?" or
  "And the one at the left?"). The summary says the whole question it stands for.
* ``remove``: after a count, "How many are left if one is removed?" (the count less one).
* ``why``: "Why?", answered "Because <the facts the first answer follows from>."

The caption and reasoning describe the picture afresh, as a first answer does (the image
is still in the prompt).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from stagewise.models.build.puzzles.questions import (
    Filter,
    Puzzle,
    QuestionSpec,
    _caption_of,
    _count,
    _count_facts,
    _relevant,
    _the,
    _there,
    render,
)
from stagewise.models.build.puzzles.scenes import COLOURS, SHAPES, column_name, row_name
from stagewise.models.stages import STAGES, Stage

__all__ = ["FOLLOW_UP_KINDS", "REMOVE_QUESTION", "WHY_QUESTION", "FollowUp", "follow_up",
           "follow_up_text", "follow_ups"]

FOLLOW_UP_KINDS: tuple[str, ...] = ("and", "remove", "why")
REMOVE_QUESTION = "How many are left if one is removed?"
WHY_QUESTION = "Why?"
_COLOUR_NAMES = tuple(COLOURS)


@dataclass(frozen=True)
class FollowUp:
    """A second question about a puzzle's picture and its four-stage answer.

    Attributes:
        kind: One of :data:`FOLLOW_UP_KINDS`.
        question: The follow-up as asked ("Why?").
        stages: Its answer's four stages.
        answer: The bare answer, equal to the conclusion.
    """

    kind: str
    question: str
    stages: dict[Stage, str]
    answer: str


def follow_ups(puzzle: Puzzle) -> list[FollowUp]:
    """Every follow-up that fits ``puzzle`` (a "why" always does), in a fixed order."""
    found = [*_and_follow_ups(puzzle)]
    removed = _remove(puzzle)
    if removed is not None:
        found.append(removed)
    found.append(_why(puzzle))
    return found


def follow_up(puzzle: Puzzle, rng: random.Random) -> FollowUp:
    """One follow-up for ``puzzle``: a kind drawn among those that fit, then one of its
    variants."""
    fitting = follow_ups(puzzle)
    kinds = sorted({f.kind for f in fitting}, key=FOLLOW_UP_KINDS.index)
    kind = rng.choice(kinds)
    return rng.choice([f for f in fitting if f.kind == kind])


def follow_up_text(follow: FollowUp) -> str:
    """The follow-up's whole answer, in the LLaVA-CoT-100k layout."""
    return "\n\n".join(f"{stage.open_tag} {follow.stages[stage]} {stage.close_tag}"
                       for stage in STAGES)


# -------------------------------------------------------------------------------- "and"


def _and_follow_ups(puzzle: Puzzle) -> list[FollowUp]:
    spec, scene = puzzle.spec, puzzle.scene
    if spec.options:
        return []
    out = []
    if spec.form == "count" and (spec.a.shape or spec.a.colour):
        for other in _other_filters(spec.a):
            out.append(_and(puzzle, f"And the {other.plural}?", replace(spec, a=other)))
    elif spec.form in ("color", "shape", "size"):
        asked = scene.at(spec.cell)
        for obj in scene.objects:
            if obj.cell == spec.cell:
                continue
            a = Filter() if spec.form == "shape" else Filter(shape=obj.shape)
            moved = replace(spec, cell=obj.cell, a=a)
            out.append(_and(puzzle, f"And the one at the {obj.position}?", moved))
            unique = sum(o.shape == obj.shape for o in scene.objects) == 1
            if spec.form != "shape" and unique and obj.shape != asked.shape:
                out.append(_and(puzzle, f"And the {obj.shape}?", moved))
    return out


def _other_filters(a: Filter) -> list[Filter]:
    """The description with its shape changed (or, without a shape, its colour)."""
    if a.shape:
        return [replace(a, shape=s) for s in SHAPES if s != a.shape]
    return [replace(a, colour=c) for c in _COLOUR_NAMES if c != a.colour]


def _and(puzzle: Puzzle, question: str, spec: QuestionSpec) -> FollowUp:
    answered = render(spec, puzzle.scene)
    return FollowUp("and", question, answered.stages, answered.answer)


# ----------------------------------------------------------------------------- "remove"


def _remove(puzzle: Puzzle) -> FollowUp | None:
    spec, scene = puzzle.spec, puzzle.scene
    if spec.form != "count" or spec.options:
        return None
    a = spec.a
    n = _count(a, scene)
    if n < 1:
        return None
    left = str(n - 1)
    stages = {
        Stage.SUMMARY: (f"The question asks how many {a.plural} are left if one is removed. "
                        f"I will count the {a.plural} and subtract one."),
        Stage.CAPTION: _caption_of(spec, _relevant(spec, scene)),
        Stage.REASONING: f"{_count_facts(a, scene)} {n} - 1 = {left}.",
        Stage.CONCLUSION: left,
    }
    return FollowUp("remove", REMOVE_QUESTION, stages, left)


# -------------------------------------------------------------------------------- "why"


def _why(puzzle: Puzzle) -> FollowUp:
    conclusion = f"Because {_why_fact(puzzle)}."
    stages = {
        Stage.SUMMARY: (f"The question asks why the answer is {puzzle.answer}. I will give "
                        "the facts the answer follows from."),
        Stage.CAPTION: puzzle.stages[Stage.CAPTION],
        Stage.REASONING: puzzle.stages[Stage.REASONING],
        Stage.CONCLUSION: conclusion,
    }
    return FollowUp("why", WHY_QUESTION, stages, conclusion)


def _why_fact(puzzle: Puzzle) -> str:
    """The facts the first answer follows from, as a clause."""
    spec, scene = puzzle.spec, puzzle.scene
    a, b, form = spec.a, spec.b, spec.form
    if form == "count":
        n = _count(a, scene)
        return f"there are no {a.plural}" if n == 0 else f"{_there(n).lower()} {a.count_phrase(n)}"
    if form in ("color", "shape", "size"):
        obj = scene.at(spec.cell)
        return f"the object at the {spec.position} is a {obj.size} {obj.colour} {obj.shape}"
    if form == "spatial":
        p, q = _the(a, scene), _the(b, scene)
        name = column_name if spec.relation in ("left", "right") else row_name
        key = (lambda o: o.col) if spec.relation in ("left", "right") else (lambda o: o.row)
        return (f"the {a.singular} is in the {name(key(p))} and the {b.singular} is in the "
                f"{name(key(q))}")
    if form in ("more", "sum", "diff"):
        na, nb = _count(a, scene), _count(b, scene)
        return f"{_there(na).lower()} {a.count_phrase(na)} and {b.count_phrase(nb)}"
    if form == "bigger":
        p, q = _the(a, scene), _the(b, scene)
        return f"the {a.singular} is {p.size} and the {b.singular} is {q.size}"
    raise ValueError(form)
