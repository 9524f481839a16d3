"""Wrong stages, for training a judge: :func:`corrupt`, :func:`corrupt_with_fact` and
:func:`verdict_text`.

A wrong stage is written in the same templated style as the right one and differs from it
in one thing (an attribute, an object, a count, a result), so that only that content tells
them apart: a hard negative. With each wrong stage comes the *fact* at the difference, a
short true statement that the right stage agrees with and the wrong one does not; a
verdict's reason states it before the decision ("Since the circle at the top left is red,
I choose response 2.").
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from stagewise.models.build.puzzles.questions import (
    _RELATIONS,
    LETTERS,
    Filter,
    Puzzle,
    QuestionSpec,
    _answer,
    _caption_of,
    _reasoning,
    _relevant,
    _summary,
    _truth,
)
from stagewise.models.build.puzzles.scenes import COLOURS, SHAPES, SIZES, Scene, make_obj
from stagewise.models.stages import Stage

__all__ = ["Corruption", "corrupt", "corrupt_with_fact", "verdict_text"]

_COLOUR_NAMES = tuple(COLOURS)
_SIZE_NAMES = tuple(SIZES)


def _wrong_values(spec: QuestionSpec, scene: Scene, truth: str) -> list[str]:
    """Other answers of the same type as ``truth`` (values, not letters)."""
    form = spec.form
    if form in ("count", "sum", "diff"):
        n = int(truth)
        return [str(m) for m in range(max(0, n - 2), n + 3) if m != n]
    if form == "color":
        return [c for c in _COLOUR_NAMES if c != truth]
    if form == "shape":
        return [s for s in SHAPES if s != truth]
    if form == "size":
        return [s for s in _SIZE_NAMES if s != truth]
    if form in ("spatial", "more"):
        return ["No" if truth == "Yes" else "Yes"]
    if form == "bigger":
        return [f"the {f.singular}" for f in (spec.a, spec.b) if f"the {f.singular}" != truth]
    raise ValueError(form)


def _wrong_answer(spec: QuestionSpec, scene: Scene, rng: random.Random) -> str:
    answer = _answer(spec, scene)
    if spec.options:
        return rng.choice([letter for letter in LETTERS[: len(spec.options)] if letter != answer])
    return rng.choice(_wrong_values(spec, scene, answer))


def _perturb_filter(f: Filter, rng: random.Random, shape_only: bool = False) -> Filter:
    if not shape_only and rng.random() < 0.5:
        return replace(f, colour=rng.choice([c for c in _COLOUR_NAMES if c != f.colour]))
    return replace(f, shape=rng.choice([s for s in SHAPES if s != f.shape]))


def _wrong_summary(spec: QuestionSpec, rng: random.Random) -> str:
    roll = rng.random()
    if spec.cell is not None and (roll < 0.5 or spec.form == "shape"):
        wrong = replace(spec, cell=rng.choice([c for c in range(9) if c != spec.cell]))
    elif spec.relation is not None and roll < 0.3:
        wrong = replace(spec, relation=rng.choice([r for r in _RELATIONS if r != spec.relation]))
    elif spec.b is not None and roll < 0.6:
        wrong = replace(spec, b=_perturb_filter(spec.b, rng))
    else:
        wrong = replace(spec, a=_perturb_filter(spec.a, rng, shape_only=spec.cell is not None))
    return _summary(wrong)


def _wrong_caption(spec: QuestionSpec, scene: Scene, rng: random.Random) -> tuple[str, str]:
    """A caption with one object changed, dropped, moved or added, and the true fact there."""
    objects = _relevant(spec, scene)
    free = list(scene.free_cells)
    ops = ["colour", "shape", "size"] + ["drop"] * bool(objects) + ["add", "move"] * bool(free)
    op = rng.choice(ops) if objects else "add"
    if op == "add" and free:
        groups = [spec.a] + ([spec.b] if spec.b is not None else [])
        group = rng.choice(groups)
        new = make_obj(rng, rng.choice(free), group.shape or rng.choice(SHAPES),
                       group.colour or rng.choice(_COLOUR_NAMES), rng.choice(_SIZE_NAMES))
        return _caption_of(spec, [*objects, new]), f"nothing is at the {new.position}"
    if op == "add":  # no free cell and nothing relevant: cannot happen with at most 6 objects
        op = "colour"
    index = rng.randrange(len(objects))
    obj = objects[index]
    if op == "drop":
        del objects[index]
        fact = f"there is {obj.phrase}"
    elif op == "move":
        objects[index] = replace(obj, cell=rng.choice(free))
        fact = f"the {obj.description} is at the {obj.position}"
    elif op == "colour":
        objects[index] = replace(obj, colour=rng.choice([c for c in _COLOUR_NAMES
                                                         if c != obj.colour]))
        fact = f"the {obj.shape} at the {obj.position} is {obj.colour}"
    elif op == "shape":
        objects[index] = replace(obj, shape=rng.choice([s for s in SHAPES if s != obj.shape]))
        fact = f"the object at the {obj.position} is a {obj.shape}"
    else:
        objects[index] = replace(obj, size="small" if obj.size == "large" else "large")
        fact = f"the {obj.description} at the {obj.position} is {obj.size}"
    return _caption_of(spec, objects), fact


@dataclass(frozen=True)
class Corruption:
    """A wrong stage and the true fact at its difference from the right one.

    Attributes:
        wrong: The wrong content, in the right one's templated style.
        fact: A short true statement the right content agrees with and the wrong one does
            not (no comma, period or newline, so it fits a verdict's reason).
    """

    wrong: str
    fact: str


def _summary_fact(right: str) -> str:
    """The right summary's first sentence, as a clause: what the question asks."""
    first = right.split(". ")[0].rstrip(".")
    return (first[0].lower() + first[1:]).replace(",", "")


def _value_fact(spec: QuestionSpec, scene: Scene, prefix: str) -> str:
    return f"{prefix} {_truth(spec, scene)}"


def corrupt_with_fact(puzzle: Puzzle, stage: Stage, rng: random.Random) -> Corruption:
    """A plausible wrong content for one stage of ``puzzle``, and the fact it gets wrong.

    * summary: asks about other objects (another colour, shape, position or relation);
      the fact is what the question asks;
    * caption: a relevant object dropped, changed or moved, or an object added; the fact
      is the truth about that object or cell;
    * reasoning: the right facts, but a wrong count, arithmetic result or conclusion; the
      fact is the result the description gives;
    * conclusion: another answer of the same type (another number, the other Yes/No,
      another color, shape, size or object, another option letter); the fact is the
      answer the reasoning gives.

    Args:
        puzzle: The puzzle.
        stage: The stage to corrupt.
        rng: The source of randomness.

    Returns:
        The wrong content (always different from ``puzzle.stages[stage]``) and the fact.
    """
    spec, scene = puzzle.spec, puzzle.scene
    right = puzzle.stages[stage]
    for _ in range(100):
        if stage is Stage.SUMMARY:
            wrong, fact = _wrong_summary(spec, rng), _summary_fact(right)
        elif stage is Stage.CAPTION:
            wrong, fact = _wrong_caption(spec, scene, rng)
        elif stage is Stage.REASONING:
            wrong = _reasoning(spec, scene, _wrong_answer(spec, scene, rng))
            fact = _value_fact(spec, scene, "the description gives")
        else:
            wrong, fact = _wrong_answer(spec, scene, rng), f"the reasoning gives {right}"
        if wrong != right:
            return Corruption(wrong, fact.replace(",", ""))
    raise RuntimeError(f"could not corrupt the {stage.value} of {puzzle.id}")


def corrupt(puzzle: Puzzle, stage: Stage, rng: random.Random) -> str:
    """A plausible wrong content for one stage of ``puzzle`` (see :func:`corrupt_with_fact`).

    Args:
        puzzle: The puzzle.
        stage: The stage to corrupt.
        rng: The source of randomness.

    Returns:
        The wrong content; always different from ``puzzle.stages[stage]``.
    """
    return corrupt_with_fact(puzzle, stage, rng).wrong


def verdict_text(fact: str, winner: int) -> str:
    """The judge's reply for a pair whose better response is ``winner``: the fact first.

    Args:
        fact: The fact at the difference (:attr:`Corruption.fact`).
        winner: 1 or 2.

    Returns:
        E.g. ``"Since the circle at the top left is red, I choose response 2."``
    """
    if winner not in (1, 2):
        raise ValueError(f"winner must be 1 or 2, not {winner!r}")
    if any(c in fact for c in ",\n"):
        raise ValueError(f"a verdict's reason has no comma or newline: {fact!r}")
    return f"Since {fact}, I choose response {winner}."
