"""Wrong stages, for training a judge: :func:`corrupt` and :func:`judge_reason`.

A wrong stage is written in the same templated style as the right one, so that only its
content tells them apart.
"""

from __future__ import annotations

import random
from dataclasses import replace

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
)
from stagewise.models.build.puzzles.scenes import COLOURS, SHAPES, SIZES, Scene, make_obj
from stagewise.models.reasoning.stages import Stage

__all__ = ["corrupt", "judge_reason"]

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


def _wrong_caption(spec: QuestionSpec, scene: Scene, rng: random.Random) -> str:
    objects = _relevant(spec, scene)
    free = list(scene.free_cells)
    ops = ["colour", "shape", "size"] + ["drop"] * bool(objects) + ["add", "move"] * bool(free)
    op = rng.choice(ops) if objects else "add"
    if op == "add" and free:
        groups = [spec.a] + ([spec.b] if spec.b is not None else [])
        group = rng.choice(groups)
        new = make_obj(rng, rng.choice(free), group.shape or rng.choice(SHAPES),
                       group.colour or rng.choice(_COLOUR_NAMES), rng.choice(_SIZE_NAMES))
        return _caption_of(spec, [*objects, new])
    if op == "add":  # no free cell and nothing relevant: cannot happen with at most 6 objects
        op = "colour"
    index = rng.randrange(len(objects))
    obj = objects[index]
    if op == "drop":
        del objects[index]
    elif op == "move":
        objects[index] = replace(obj, cell=rng.choice(free))
    elif op == "colour":
        objects[index] = replace(obj, colour=rng.choice([c for c in _COLOUR_NAMES
                                                         if c != obj.colour]))
    elif op == "shape":
        objects[index] = replace(obj, shape=rng.choice([s for s in SHAPES if s != obj.shape]))
    else:
        objects[index] = replace(obj, size="small" if obj.size == "large" else "large")
    return _caption_of(spec, objects)


def corrupt(puzzle: Puzzle, stage: Stage, rng: random.Random) -> str:
    """A plausible wrong content for one stage of ``puzzle``, in the same templated style.

    * summary: asks about other objects (another colour, shape, position or relation);
    * caption: a relevant object dropped, changed or moved, or an object added;
    * reasoning: the right facts, but a wrong count, arithmetic result or conclusion;
    * conclusion: another answer of the same type (another number, the other Yes/No, another
      color, shape, size or object, another option letter).

    Args:
        puzzle: The puzzle.
        stage: The stage to corrupt.
        rng: The source of randomness.

    Returns:
        The wrong content; always different from ``puzzle.stages[stage]``.
    """
    spec, scene = puzzle.spec, puzzle.scene
    right = puzzle.stages[stage]
    for _ in range(100):
        if stage is Stage.SUMMARY:
            wrong = _wrong_summary(spec, rng)
        elif stage is Stage.CAPTION:
            wrong = _wrong_caption(spec, scene, rng)
        elif stage is Stage.REASONING:
            wrong = _reasoning(spec, scene, _wrong_answer(spec, scene, rng))
        else:
            wrong = _wrong_answer(spec, scene, rng)
        if wrong != right:
            return wrong
    raise RuntimeError(f"could not corrupt the {stage.value} of {puzzle.id}")


_REASONS = {
    Stage.SUMMARY: "response {n} asks about the right objects",
    Stage.CAPTION: "response {n} lists the objects in the image correctly",
    Stage.REASONING: "response {n} reasons correctly from the description",
    Stage.CONCLUSION: "response {n} gives the answer that the reasoning supports",
    None: "response {n} answers the question correctly",
}


def judge_reason(stage: Stage | None, winner: int) -> str:
    """The reason phrase of a verdict for the better response (no comma, newline or period).

    Args:
        stage: The judged stage, or None for whole answers.
        winner: 1 or 2.

    Returns:
        E.g. ``"response 2 lists the objects in the image correctly"``.
    """
    if winner not in (1, 2):
        raise ValueError(f"winner must be 1 or 2, not {winner!r}")
    return _REASONS[stage].format(n=winner)
