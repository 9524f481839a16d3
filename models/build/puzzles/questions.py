"""Questions about a scene and their templated four-stage answers (LLaVA-CoT style).

Every text is a deterministic function of the scene and the question, so that a very small
model can learn the format. :mod:`stagewise.models.build.puzzles.random_questions` draws the
questions that fit a scene; :mod:`stagewise.models.build.puzzles.wrong_stages` makes plausible wrong
stage contents in the same style, for training a judge.
"""

from __future__ import annotations

from dataclasses import dataclass

from stagewise.models.build.puzzles.scenes import (
    CELL_NAMES,
    SIZES,
    Obj,
    Scene,
    column_name,
    row_name,
)
from stagewise.models.stages import STAGES, Stage

__all__ = [
    "CHOICE_INSTRUCTION",
    "KINDS",
    "Filter",
    "Puzzle",
    "QuestionSpec",
    "answer_text",
    "render",
]

KINDS: tuple[str, ...] = ("count", "attribute", "spatial", "compare", "arithmetic", "choice")
"""The question kinds, as used in record ids."""

CHOICE_INSTRUCTION = "Answer with the option's letter from the given choices directly."
LETTERS = "ABCD"
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
        spec: What is asked (used by :func:`~stagewise.models.build.puzzles.wrong_stages.corrupt`).
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


def _count_facts(a: Filter, scene: Scene) -> str:
    """Where the objects fitting ``a`` are: ``"There are 2 red circles, one at the top and
    one at the center."``"""
    objs = [obj for obj in scene.objects if a.matches(obj)]
    if not objs:
        return f"There are no {a.plural}."
    if len(objs) == 1:
        return f"There is 1 {a.singular}, at the {objs[0].position}."
    where = _join([f"one at the {obj.position}" for obj in objs])
    return f"There are {len(objs)} {a.plural}, {where}."


def _reasoning_of(spec: QuestionSpec, scene: Scene, value: str) -> str:
    """The reasoning from the scene's facts to ``value`` (the truth, or a wrong claim)."""
    a, b, form = spec.a, spec.b, spec.form
    if form == "count":
        claim = int(value)
        return f"{_count_facts(a, scene)} So {_there(claim).lower()} {a.count_phrase(claim)}."
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
        spec: What is asked; it must be answerable for ``scene`` (see
            :func:`~stagewise.models.build.puzzles.random_questions.make_spec`).
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
