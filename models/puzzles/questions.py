"""Questions about a scene and their templated four-stage answers (LLaVA-CoT style).

Every text is a deterministic function of the scene and the question, so that a very small
model can learn the format. :func:`corrupt` makes plausible wrong stage contents in the same
style, and :func:`judge_reason` the reason phrase of a verdict, for training a judge.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from models.puzzles.scenes import (
    CELL_NAMES,
    COLOURS,
    SHAPES,
    SIZES,
    Obj,
    Scene,
    column_name,
    make_obj,
    random_scene,
    row_name,
)
from models.stages import STAGES, Stage

__all__ = [
    "CHOICE_INSTRUCTION",
    "KINDS",
    "Filter",
    "Puzzle",
    "QuestionSpec",
    "answer_text",
    "corrupt",
    "judge_reason",
    "make_puzzle",
    "make_spec",
    "render",
]

KINDS: tuple[str, ...] = ("count", "attribute", "spatial", "compare", "arithmetic", "choice")
"""The question kinds, as used in record ids."""

CHOICE_INSTRUCTION = "Answer with the option's letter from the given choices directly."
LETTERS = "ABCD"
_COLOUR_NAMES = tuple(COLOURS)
_SIZE_NAMES = tuple(SIZES)
_RELATIONS = {
    "left": "to the left of",
    "right": "to the right of",
    "above": "above",
    "below": "below",
}


# --------------------------------------------------------------------------------------------
# Descriptions


@dataclass(frozen=True)
class Filter:
    """A description of objects by colour and/or shape (None: any)."""

    colour: str | None = None
    shape: str | None = None

    def matches(self, obj: Obj) -> bool:
        """Whether ``obj`` fits the description."""
        return (self.colour in (None, obj.colour)) and (self.shape in (None, obj.shape))

    @property
    def singular(self) -> str:
        """E.g. ``"red circle"``, ``"circle"``, ``"red shape"``, ``"shape"``."""
        noun = self.shape or "shape"
        return f"{self.colour} {noun}" if self.colour else noun

    @property
    def plural(self) -> str:
        """E.g. ``"red circles"``, ``"shapes"``."""
        return self.singular + "s"

    def count_phrase(self, n: int) -> str:
        """E.g. ``"1 red circle"``, ``"0 circles"``, ``"3 shapes"``."""
        return f"{n} {self.singular if n == 1 else self.plural}"


def _join(items: list[str]) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _there(n: int) -> str:
    return "There is" if n == 1 else "There are"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# --------------------------------------------------------------------------------------------
# Question specs


@dataclass(frozen=True)
class QuestionSpec:
    """What is asked, independent of wording.

    Attributes:
        kind: One of :data:`KINDS`.
        form: The question form: ``count``, ``color``, ``shape``, ``size``, ``spatial``,
            ``more``, ``bigger``, ``sum`` or ``diff``; a choice question uses the form of the
            question under its options (``color``, ``shape`` or ``count``).
        a: The (first) description.
        b: The second description, for two-object and two-group questions.
        cell: The asked cell, for ``color``, ``shape`` and ``size``.
        relation: ``left``, ``right``, ``above`` or ``below``, for ``spatial``.
        options: The options of a choice question, in letter order; empty otherwise.
    """

    kind: str
    form: str
    a: Filter = Filter()
    b: Filter | None = None
    cell: int | None = None
    relation: str | None = None
    options: tuple[str, ...] = ()

    @property
    def position(self) -> str:
        return CELL_NAMES[self.cell] if self.cell is not None else ""


@dataclass(frozen=True)
class Puzzle:
    """One question about one scene, with its answer in four stages.

    Attributes:
        id: The record id.
        kind: One of :data:`KINDS`.
        question: The full user text (with the options and instruction for a choice question).
        stages: The content of each of the four stages.
        answer: The bare answer, equal to the conclusion.
        scene: The scene.
        spec: What is asked (used by :func:`corrupt`).
    """

    id: str
    kind: str
    question: str
    stages: dict[Stage, str]
    answer: str
    scene: Scene
    spec: QuestionSpec


def _question(spec: QuestionSpec) -> str:
    """The question text for ``spec`` (with options for a choice question)."""
    a, b = spec.a, spec.b
    form = spec.form
    if form == "count":
        text = f"How many {a.plural} are there?"
    elif form == "color":
        text = f"What color is the {a.singular} at the {spec.position}?"
    elif form == "shape":
        text = f"What shape is at the {spec.position}?"
    elif form == "size":
        text = f"What size is the {a.singular} at the {spec.position}?"
    elif form == "spatial":
        text = f"Is the {a.singular} {_RELATIONS[spec.relation]} the {b.singular}?"
    elif form == "more":
        text = f"Are there more {a.plural} than {b.plural}?"
    elif form == "bigger":
        text = f"Which is bigger, the {a.singular} or the {b.singular}?"
    elif form == "sum":
        text = f"How many {a.plural} and {b.plural} are there in total?"
    elif form == "diff":
        text = f"How many more {a.plural} than {b.plural} are there?"
    else:
        raise ValueError(form)
    if spec.options:
        lines = [f"{letter}. {option}" for letter, option in zip(LETTERS, spec.options,
                                                                 strict=False)]
        text = "\n".join([text, *lines, CHOICE_INSTRUCTION])
    return text


# --------------------------------------------------------------------------------------------
# Stage texts


def _summary(spec: QuestionSpec) -> str:
    a, b, form = spec.a, spec.b, spec.form
    offer = f" and gives {len(spec.options)} options" if spec.options else ""
    pick = " and pick the matching option" if spec.options else ""
    if form == "count":
        return (f"The question asks how many {a.plural} are in the image{offer}. "
                f"I will find the {a.plural} and count them{pick}.")
    if form == "color":
        return (f"The question asks for the color of the {a.singular} at the "
                f"{spec.position}{offer}. I will find the object at the {spec.position} and "
                f"identify its color{pick}.")
    if form == "shape":
        return (f"The question asks for the shape of the object at the {spec.position}{offer}. "
                f"I will find the object at the {spec.position} and identify its shape{pick}.")
    if form == "size":
        return (f"The question asks for the size of the {a.singular} at the {spec.position}. "
                f"I will find the object at the {spec.position} and identify its size.")
    if form == "spatial":
        axis = "columns" if spec.relation in ("left", "right") else "rows"
        return (f"The question asks whether the {a.singular} is {_RELATIONS[spec.relation]} "
                f"the {b.singular}. I will find both objects and compare their {axis}.")
    if form == "more":
        return (f"The question asks whether there are more {a.plural} than {b.plural}. "
                f"I will count the {a.plural} and the {b.plural} and compare the counts.")
    if form == "bigger":
        return (f"The question asks which is bigger, the {a.singular} or the {b.singular}. "
                "I will find both objects and compare their sizes.")
    if form == "sum":
        return (f"The question asks for the total number of {a.plural} and {b.plural}. "
                f"I will count the {a.plural} and the {b.plural} and add the counts.")
    if form == "diff":
        return (f"The question asks how many more {a.plural} than {b.plural} there are. "
                f"I will count the {a.plural} and the {b.plural} and subtract.")
    raise ValueError(form)


def _relevant(spec: QuestionSpec, scene: Scene) -> list[Obj]:
    """The objects the caption lists, in row-major order."""
    if spec.cell is not None:
        return [obj for obj in scene.objects if obj.cell == spec.cell]
    if spec.b is None:
        return [obj for obj in scene.objects if spec.a.matches(obj)]
    return [obj for obj in scene.objects if spec.a.matches(obj) or spec.b.matches(obj)]


def _none_phrase(spec: QuestionSpec) -> str:
    if spec.b is None:
        return f"no {spec.a.plural}"
    return f"no {spec.a.plural} or {spec.b.plural}"


def _caption_of(spec: QuestionSpec, objects: list[Obj]) -> str:
    objects = sorted(objects, key=lambda obj: obj.cell)
    listed = _join([obj.phrase for obj in objects]) if objects else _none_phrase(spec)
    return f"The image shows {listed}."


def _the(spec_filter: Filter, scene: Scene) -> Obj:
    """The unique object fitting ``spec_filter``."""
    (obj,) = [obj for obj in scene.objects if spec_filter.matches(obj)]
    return obj


def _count(f: Filter, scene: Scene) -> int:
    return sum(f.matches(obj) for obj in scene.objects)


def _truth(spec: QuestionSpec, scene: Scene) -> str:
    """The answer to the question under the options (a value, not a letter)."""
    a, b, form = spec.a, spec.b, spec.form
    if form == "count":
        return str(_count(a, scene))
    if form in ("color", "shape", "size"):
        obj = scene.at(spec.cell)
        return {"color": obj.colour, "shape": obj.shape, "size": obj.size}[form]
    if form == "spatial":
        p, q = _the(a, scene), _the(b, scene)
        holds = {"left": p.col < q.col, "right": p.col > q.col,
                 "above": p.row < q.row, "below": p.row > q.row}[spec.relation]
        return "Yes" if holds else "No"
    if form == "more":
        return "Yes" if _count(a, scene) > _count(b, scene) else "No"
    if form == "bigger":
        p, q = _the(a, scene), _the(b, scene)
        winner = p if SIZES[p.size] > SIZES[q.size] else q
        return f"the {winner.description}"
    if form == "sum":
        return str(_count(a, scene) + _count(b, scene))
    if form == "diff":
        return str(_count(a, scene) - _count(b, scene))
    raise ValueError(form)


def _answer(spec: QuestionSpec, scene: Scene) -> str:
    truth = _truth(spec, scene)
    return LETTERS[spec.options.index(truth)] if spec.options else truth


def _reasoning_of(spec: QuestionSpec, scene: Scene, value: str) -> str:
    """The reasoning from the scene's facts to ``value`` (the truth, or a wrong claim)."""
    a, b, form = spec.a, spec.b, spec.form
    if form == "count":
        objs = [obj for obj in scene.objects if a.matches(obj)]
        n, claim = len(objs), int(value)
        if n == 0:
            facts = f"There are no {a.plural}."
        elif n == 1:
            facts = f"There is 1 {a.singular}, at the {objs[0].position}."
        else:
            where = _join([f"one at the {obj.position}" for obj in objs])
            facts = f"There are {n} {a.plural}, {where}."
        return f"{facts} So {_there(claim).lower()} {a.count_phrase(claim)}."
    if form in ("color", "shape", "size"):
        obj = scene.at(spec.cell)
        return (f"The object at the {spec.position} is a {obj.size} {obj.colour} {obj.shape}, "
                f"so its {form} is {value}.")
    if form == "spatial":
        p, q = _the(a, scene), _the(b, scene)
        if spec.relation in ("left", "right"):
            facts = (f"The {a.singular} is in the {column_name(p.col)} and the {b.singular} is "
                     f"in the {column_name(q.col)}")
        else:
            facts = (f"The {a.singular} is in the {row_name(p.row)} and the {b.singular} is in "
                     f"the {row_name(q.row)}")
        neg = "" if value == "Yes" else "not "
        return f"{facts}, so the {a.singular} is {neg}{_RELATIONS[spec.relation]} the {b.singular}."
    if form == "more":
        na, nb = _count(a, scene), _count(b, scene)
        neg = "" if value == "Yes" else "not "
        return (f"{_there(na)} {a.count_phrase(na)} and {b.count_phrase(nb)}. "
                f"{na} is {neg}more than {nb}, so there are {neg}more {a.plural} than "
                f"{b.plural}.")
    if form == "bigger":
        p, q = _the(a, scene), _the(b, scene)
        return (f"The {a.singular} is {p.size} and the {b.singular} is {q.size}, so {value} is "
                "bigger.")
    if form in ("sum", "diff"):
        na, nb = _count(a, scene), _count(b, scene)
        op = "+" if form == "sum" else "-"
        facts = f"{_there(na)} {a.count_phrase(na)} and {b.count_phrase(nb)}."
        return f"{facts} {na} {op} {nb} = {value}."
    raise ValueError(form)


def _reasoning(spec: QuestionSpec, scene: Scene, claim: str) -> str:
    """The reasoning; for a choice question ``claim`` is a letter."""
    if not spec.options:
        return _reasoning_of(spec, scene, claim)
    value = spec.options[LETTERS.index(claim)]
    return f"{_reasoning_of(spec, scene, value)} {_cap(value)} is option {claim}."


def render(spec: QuestionSpec, scene: Scene, puzzle_id: str = "") -> Puzzle:
    """The puzzle asking ``spec`` about ``scene``, with its four stages.

    Args:
        spec: What is asked; it must be answerable for ``scene`` (see :func:`make_spec`).
        scene: The scene.
        puzzle_id: The record id.

    Returns:
        The puzzle.
    """
    answer = _answer(spec, scene)
    stages = {
        Stage.SUMMARY: _summary(spec),
        Stage.CAPTION: _caption_of(spec, _relevant(spec, scene)),
        Stage.REASONING: _reasoning(spec, scene, answer),
        Stage.CONCLUSION: answer,
    }
    return Puzzle(puzzle_id, spec.kind, _question(spec), stages, answer, scene, spec)


def answer_text(puzzle: Puzzle) -> str:
    """The whole answer, in the LLaVA-CoT-100k layout (the ``gpt`` turn's value)."""
    return "\n\n".join(f"{stage.open_tag} {puzzle.stages[stage]} {stage.close_tag}"
                       for stage in STAGES)


# --------------------------------------------------------------------------------------------
# Drawing questions


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


def _base_spec(rng: random.Random, kind: str, scene: Scene) -> QuestionSpec | None:
    """A spec of ``kind`` for ``scene``, or None if this attempt does not fit the scene."""
    want_yes = rng.random() < 0.5
    if kind == "count":
        roll = rng.random()
        colour, shape = roll < 0.6, roll < 0.4 or roll >= 0.8
        return QuestionSpec(kind, "count", _pick_filter(rng, scene, colour, shape))
    if kind == "attribute":
        obj = rng.choice(scene.objects)
        form = rng.choices(("color", "shape", "size"), (0.45, 0.4, 0.15))[0]
        a = Filter() if form == "shape" else Filter(shape=obj.shape)
        return QuestionSpec(kind, form, a, cell=obj.cell)
    if kind == "spatial":
        unique = _unique(scene)
        if len(unique) < 2:
            return None
        p, q = rng.sample(unique, 2)
        fits = [r for r in _RELATIONS
                if ({"left": p.col < q.col, "right": p.col > q.col,
                     "above": p.row < q.row, "below": p.row > q.row}[r]) == want_yes]
        if not fits:
            return None
        return QuestionSpec(kind, "spatial", Filter(p.colour, p.shape),
                            Filter(q.colour, q.shape), relation=rng.choice(fits))
    if kind == "compare":
        if rng.random() < 0.3:
            big = [obj for obj in _unique(scene) if obj.size == "large"]
            small = [obj for obj in _unique(scene) if obj.size == "small"]
            if not big or not small:
                return None
            pair = [rng.choice(big), rng.choice(small)]
            rng.shuffle(pair)
            p, q = pair
            return QuestionSpec(kind, "bigger", Filter(p.colour, p.shape),
                                Filter(q.colour, q.shape))
        a, b = _two_groups(rng)
        na, nb = _count(a, scene), _count(b, scene)
        if want_yes and na == nb:
            return None
        if (na > nb) != want_yes:
            a, b = b, a
        return QuestionSpec(kind, "more", a, b)
    if kind == "arithmetic":
        a, b = _two_groups(rng)
        if rng.random() < 0.5:
            return QuestionSpec(kind, "sum", a, b)
        na, nb = _count(a, scene), _count(b, scene)
        if na < nb:
            a, b = b, a
        if na == nb and rng.random() < 0.7:
            return None
        return QuestionSpec(kind, "diff", a, b)
    if kind == "choice":
        form = rng.choices(("color", "shape", "count"), (0.4, 0.25, 0.35))[0]
        if form == "count":
            roll = rng.random()
            spec = QuestionSpec(kind, "count", _pick_filter(rng, scene, roll < 0.7, roll >= 0.3))
            pool = [str(n) for n in range(7)]
        else:
            obj = rng.choice(scene.objects)
            a = Filter() if form == "shape" else Filter(shape=obj.shape)
            spec = QuestionSpec(kind, form, a, cell=obj.cell)
            pool = list(SHAPES if form == "shape" else _COLOUR_NAMES)
        truth = _truth(spec, scene)
        others = [value for value in pool if value != truth]
        options = [truth, *rng.sample(others, min(len(others), rng.randint(2, 3)))]
        rng.shuffle(options)
        return replace(spec, options=tuple(options))
    raise ValueError(f"unknown kind {kind!r}")


def make_spec(rng: random.Random, kind: str, scene: Scene) -> QuestionSpec | None:
    """A random question of ``kind`` about ``scene``, or None if this draw does not fit.

    Args:
        rng: The source of randomness.
        kind: One of :data:`KINDS`.
        scene: The scene.

    Returns:
        The spec, or None (draw again, possibly with another scene).
    """
    return _base_spec(rng, kind, scene)


def make_puzzle(rng: random.Random, id: str = "", kind: str | None = None) -> Puzzle:
    """A random puzzle: a scene and a question of ``kind`` (random if None) that fits it.

    Args:
        rng: The source of randomness; the same state gives the same puzzle.
        id: The record id.
        kind: One of :data:`KINDS`, or None to draw one uniformly.

    Returns:
        The puzzle.
    """
    kind = kind or rng.choice(KINDS)
    while True:
        scene = random_scene(rng)
        spec = make_spec(rng, kind, scene)
        if spec is not None:
            return render(spec, scene, id)


# --------------------------------------------------------------------------------------------
# Wrong stages, for training a judge


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
