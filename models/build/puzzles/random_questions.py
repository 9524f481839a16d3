"""Random questions that fit a scene: :func:`make_spec` and :func:`make_puzzle`.

Each kind of question has its own drawing function; a draw that does not fit the scene
(too few distinct objects, no pair in the wanted relation) gives None, and the caller
draws again. The same random state always gives the same question.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

from stagewise.models.build.puzzles.questions import (
    _RELATIONS,
    KINDS,
    Filter,
    Puzzle,
    QuestionSpec,
    _count,
    _truth,
    render,
)
from stagewise.models.build.puzzles.scenes import COLOURS, SHAPES, Obj, Scene, random_scene

__all__ = ["make_puzzle", "make_spec"]

_COLOUR_NAMES = tuple(COLOURS)


def _unique(scene: Scene) -> list[Obj]:
    """The objects whose colour and shape no other object shares."""
    descs = [obj.description for obj in scene.objects]
    return [obj for obj in scene.objects if descs.count(obj.description) == 1]


def _pick_filter(rng: random.Random, scene: Scene, colour: bool, shape: bool) -> Filter:
    """A description, mostly of an object in the scene (so counts are often non-zero)."""
    obj = rng.choice(scene.objects) if rng.random() < 0.75 else None
    c = (obj.colour if obj else rng.choice(_COLOUR_NAMES)) if colour else None
    s = (obj.shape if obj else rng.choice(SHAPES)) if shape else None
    return Filter(c, s)


def _two_groups(rng: random.Random) -> tuple[Filter, Filter]:
    """Two different shapes, or two different colours."""
    if rng.random() < 0.5:
        s1, s2 = rng.sample(SHAPES, 2)
        return Filter(shape=s1), Filter(shape=s2)
    c1, c2 = rng.sample(_COLOUR_NAMES, 2)
    return Filter(colour=c1), Filter(colour=c2)



def _count_spec(rng: random.Random, scene: Scene, want_yes: bool) -> QuestionSpec | None:
    roll = rng.random()
    colour, shape = roll < 0.6, roll < 0.4 or roll >= 0.8
    return QuestionSpec("count", "count", _pick_filter(rng, scene, colour, shape))


def _attribute_spec(rng: random.Random, scene: Scene, want_yes: bool) -> QuestionSpec | None:
    obj = rng.choice(scene.objects)
    form = rng.choices(("color", "shape", "size"), (0.45, 0.4, 0.15))[0]
    a = Filter() if form == "shape" else Filter(shape=obj.shape)
    return QuestionSpec("attribute", form, a, cell=obj.cell)


def _spatial_spec(rng: random.Random, scene: Scene, want_yes: bool) -> QuestionSpec | None:
    unique = _unique(scene)
    if len(unique) < 2:
        return None
    p, q = rng.sample(unique, 2)
    fits = [r for r in _RELATIONS
            if ({"left": p.col < q.col, "right": p.col > q.col,
                 "above": p.row < q.row, "below": p.row > q.row}[r]) == want_yes]
    if not fits:
        return None
    return QuestionSpec("spatial", "spatial", Filter(p.colour, p.shape),
                        Filter(q.colour, q.shape), relation=rng.choice(fits))


def _compare_spec(rng: random.Random, scene: Scene, want_yes: bool) -> QuestionSpec | None:
    if rng.random() < 0.3:
        return _bigger_spec(rng, scene)
    a, b = _two_groups(rng)
    na, nb = _count(a, scene), _count(b, scene)
    if want_yes and na == nb:
        return None
    if (na > nb) != want_yes:
        a, b = b, a
    return QuestionSpec("compare", "more", a, b)


def _bigger_spec(rng: random.Random, scene: Scene) -> QuestionSpec | None:
    """Which of a large and a small object is bigger, in random order."""
    big = [obj for obj in _unique(scene) if obj.size == "large"]
    small = [obj for obj in _unique(scene) if obj.size == "small"]
    if not big or not small:
        return None
    pair = [rng.choice(big), rng.choice(small)]
    rng.shuffle(pair)
    p, q = pair
    return QuestionSpec("compare", "bigger", Filter(p.colour, p.shape),
                        Filter(q.colour, q.shape))


def _arithmetic_spec(rng: random.Random, scene: Scene, want_yes: bool) -> QuestionSpec | None:
    a, b = _two_groups(rng)
    if rng.random() < 0.5:
        return QuestionSpec("arithmetic", "sum", a, b)
    na, nb = _count(a, scene), _count(b, scene)
    if na < nb:
        a, b = b, a
    if na == nb and rng.random() < 0.7:
        return None
    return QuestionSpec("arithmetic", "diff", a, b)


def _choice_spec(rng: random.Random, scene: Scene, want_yes: bool) -> QuestionSpec | None:
    form = rng.choices(("color", "shape", "count"), (0.4, 0.25, 0.35))[0]
    if form == "count":
        roll = rng.random()
        spec = QuestionSpec("choice", "count", _pick_filter(rng, scene, roll < 0.7, roll >= 0.3))
        pool = [str(n) for n in range(7)]
    else:
        obj = rng.choice(scene.objects)
        a = Filter() if form == "shape" else Filter(shape=obj.shape)
        spec = QuestionSpec("choice", form, a, cell=obj.cell)
        pool = list(SHAPES if form == "shape" else _COLOUR_NAMES)
    truth = _truth(spec, scene)
    others = [value for value in pool if value != truth]
    options = [truth, *rng.sample(others, min(len(others), rng.randint(2, 3)))]
    rng.shuffle(options)
    return replace(spec, options=tuple(options))


# Each kind's drawing function: (rng, scene, whether a yes/no question should be yes).
_SPEC_MAKERS: dict[str, Callable[[random.Random, Scene, bool], QuestionSpec | None]] = {
    "count": _count_spec,
    "attribute": _attribute_spec,
    "spatial": _spatial_spec,
    "compare": _compare_spec,
    "arithmetic": _arithmetic_spec,
    "choice": _choice_spec,
}


def make_spec(rng: random.Random, kind: str, scene: Scene) -> QuestionSpec | None:
    """A random question of ``kind`` about ``scene``, or None if this draw does not fit.

    Args:
        rng: The source of randomness.
        kind: One of :data:`~stagewise.models.build.puzzles.questions.KINDS`.
        scene: The scene.

    Returns:
        The spec, or None (draw again, possibly with another scene).

    Raises:
        ValueError: ``kind`` is not a question kind.
    """
    want_yes = rng.random() < 0.5  # drawn for every kind, so the random stream stays the same
    if kind not in _SPEC_MAKERS:
        raise ValueError(f"unknown kind {kind!r}")
    return _SPEC_MAKERS[kind](rng, scene, want_yes)


def make_puzzle(rng: random.Random, id: str = "", kind: str | None = None) -> Puzzle:
    """A random puzzle: a scene and a question of ``kind`` (random if None) that fits it.

    Args:
        rng: The source of randomness; the same state gives the same puzzle.
        id: The record id.
        kind: One of :data:`~stagewise.models.build.puzzles.questions.KINDS`, or None to draw
            one uniformly.

    Returns:
        The puzzle.
    """
    kind = kind or rng.choice(KINDS)
    while True:
        scene = random_scene(rng)
        spec = make_spec(rng, kind, scene)
        if spec is not None:
            return render(spec, scene, id)
