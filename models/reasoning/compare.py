"""Two configurations of one question: how they are written, and where their answers
diverged (:mod:`stagewise.models.compare` runs them).

A configuration is written as ``key=value`` pairs separated by commas, the way
``stagewise ask --compare "beam=1" "beam=4,select=verdict"`` and the window's Compare…
dialog take it (:func:`parse_configuration`). Its keys are the search's settings
(:class:`~stagewise.models.reasoning.search_settings.SearchSettings`: ``beam``,
``select``, ``strategy``, ``seed``, ``max_stage_tokens``, ``temperature``, ``top_p``,
``max_judge_tokens``, ``judge_prompt``, ``retrace_cutoff``, ``scorer_model``), checked
against their ranges and the registries, and ``model`` / ``mmproj`` for another model.

:func:`divergence` says which stage's text first differs between two answers. Qt-free.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stagewise.models.bounds import FloatRange, IntRange
from stagewise.models.errors import StagewiseError
from stagewise.models.events import SearchResult
from stagewise.models.inference.sampling_settings import TEMPERATURE, TOP_P
from stagewise.models.reasoning.search_settings import (
    BEAM,
    MAX_JUDGE_TOKENS,
    MAX_STAGE_TOKENS,
    SEED,
    SearchSettings,
)
from stagewise.models.stages import STAGES, Stage

__all__ = ["COMPARE_KEYS", "SIDES", "Comparison", "Configuration", "Divergence", "divergence",
           "parse_configuration", "same_model", "sides"]

SIDES = ("A", "B")
"""How the two configurations are named in columns and messages."""

_NUMBERS: dict[str, IntRange | FloatRange] = {
    "beam": BEAM, "seed": SEED, "max_stage_tokens": MAX_STAGE_TOKENS,
    "max_judge_tokens": MAX_JUDGE_TOKENS, "temperature": TEMPERATURE, "top_p": TOP_P,
}
_NAMES = ("strategy", "select", "judge_prompt")
_PATHS = ("scorer_model", "model", "mmproj")
COMPARE_KEYS: tuple[str, ...] = (*_NUMBERS, *_NAMES, "retrace_cutoff", *_PATHS)
"""The keys a configuration may set."""
_ALIASES = {"selection": "select", "scorer": "select", "max-stage-tokens": "max_stage_tokens",
            "max-judge-tokens": "max_judge_tokens", "top-p": "top_p",
            "judge-prompt": "judge_prompt", "retrace-cutoff": "retrace_cutoff",
            "scorer-model": "scorer_model"}


@dataclass(frozen=True)
class Configuration:
    """One side of a comparison.

    Attributes:
        text: The configuration as written (``"beam=4,select=verdict"``).
        search: The search it runs.
        model: Another text model for this side (a GGUF or library id); None: the
            comparison's own model.
        mmproj: That model's projector (None: the one beside it).
    """

    text: str
    search: SearchSettings
    model: Path | None = None
    mmproj: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """The configuration as ``--json`` prints it."""
        s = self.search
        return {"text": self.text, "strategy": s.strategy, "beam": s.beam, "select": s.select,
                "seed": s.seed, "max_stage_tokens": s.max_stage_tokens,
                "temperature": s.sampling.temperature, "top_p": s.sampling.top_p,
                "model": None if self.model is None else str(self.model)}


def parse_configuration(text: str, base: SearchSettings) -> Configuration:
    """Read a configuration: ``key=value`` pairs separated by commas, each changing
    ``base``; an empty text is ``base`` itself.

    Raises:
        StagewiseError: A pair is not ``key=value``, a key is unknown or given twice, or a
            value is out of its range or not one the registries know; one line, naming
            the configuration and the key.
    """
    from stagewise.models.reasoning.strategies import STRATEGIES

    changes: dict[str, Any] = {}
    sampling: dict[str, float] = {}
    model = mmproj = None
    where = f"compare configuration {text!r}"
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, equals, value = (s.strip() for s in part.partition("="))
        key = _ALIASES.get(key.lower(), key.lower())
        if not equals or not key or not value:
            raise StagewiseError(f"{where}: {part!r} is not key=value (keys: "
                                 f"{', '.join(COMPARE_KEYS)})")
        if key not in COMPARE_KEYS:
            raise StagewiseError(f"{where}: unknown key {key!r} (keys: "
                                 f"{', '.join(COMPARE_KEYS)})")
        if key in changes or key in sampling or (key == "model" and model is not None) or (
                key == "mmproj" and mmproj is not None):
            raise StagewiseError(f"{where}: {key} is given twice")
        if key in _NUMBERS:
            number = _number(_NUMBERS[key], value, where)
            (sampling if key in ("temperature", "top_p") else changes)[key] = number
        elif key == "retrace_cutoff":
            changes[key] = _number(FloatRange(key, -1e9, 1e9), value, where)
        elif key == "model":
            model = Path(value)
        elif key == "mmproj":
            mmproj = Path(value)
        elif key == "scorer_model":
            changes[key] = Path(value)
        else:
            changes[key] = value
    if mmproj is not None and model is None:
        raise StagewiseError(f"{where}: mmproj needs a model")
    if "strategy" in changes and "select" not in changes and base.select is not None:
        changes["select"] = None  # the new strategy's own default, not the base's choice
    search = dataclasses.replace(base, **changes, sampling=dataclasses.replace(
        base.sampling, **sampling))
    try:
        search.validate()
        known = STRATEGIES.find(search.strategy)
        if known is not None and search.select is not None:
            from stagewise.models.reasoning.selections import selection

            known.check(search, selection(search.select))
    except StagewiseError as error:
        raise StagewiseError(f"{where}: {error}") from None
    return Configuration(text.strip(), search, model, mmproj)


def _number(bound: IntRange | FloatRange, value: str, where: str) -> int | float:
    """``value`` read as the range's kind of number and checked against it."""
    try:
        number: int | float = int(value) if isinstance(bound, IntRange) else float(value)
    except ValueError:
        kind = "a whole number" if isinstance(bound, IntRange) else "a number"
        raise StagewiseError(f"{where}: {bound.name} must be {kind}, not {value!r}") from None
    try:
        bound.check(number)
    except StagewiseError as error:
        raise StagewiseError(f"{where}: {error}") from None
    return number


def same_model(first: Configuration, second: Configuration) -> bool:
    """Whether the two sides run on the same model (then one session answers both)."""
    return (first.model, first.mmproj) == (second.model, second.mmproj)


@dataclass(frozen=True)
class Divergence:
    """Where two answers part.

    Attributes:
        stage: The first stage (in answer order) whose text differs; None when every
            stage's text is the same.
        offset: How many characters of that stage's text (whitespace runs counted as one
            space) the two share before they differ.
    """

    stage: Stage | None
    offset: int = 0

    @property
    def same(self) -> bool:
        return self.stage is None

    def describe(self) -> str:
        """One line for people."""
        if self.stage is None:
            return "the two answers are the same in every stage"
        return (f"the answers diverge at the {self.stage.title.lower()} stage "
                f"(after {self.offset} matching characters)")

    def to_json(self) -> dict[str, Any]:
        return {"stage": None if self.stage is None else self.stage.value,
                "offset": self.offset, "same": self.same}


def _plain(text: str) -> str:
    return " ".join(text.split())


def divergence(first: SearchResult, second: SearchResult) -> Divergence:
    """The first stage whose text differs between two answers (whitespace aside)."""
    for stage in STAGES:
        a, b = _plain(first.stages.get(stage, "")), _plain(second.stages.get(stage, ""))
        if a != b:
            offset = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                          min(len(a), len(b)))
            return Divergence(stage, offset)
    return Divergence(None)


@dataclass(frozen=True)
class Comparison:
    """Two answers to one question.

    Attributes:
        question: The question.
        configurations: The two sides' configurations, A first.
        results: Their results, in the same order.
        models: Who answered each side, as the front ends name it.
    """

    question: str
    configurations: tuple[Configuration, Configuration]
    results: tuple[SearchResult, SearchResult]
    models: tuple[str, str] = ("", "")

    @property
    def divergence(self) -> Divergence:
        return divergence(*self.results)

    def to_json(self) -> dict[str, Any]:
        """Both runs and the divergence, as ``stagewise ask --compare --json`` prints it."""
        return {
            "question": self.question,
            "runs": [{"side": side, "configuration": c.to_json(), "model": model,
                      "result": r.to_json()}
                     for side, c, r, model in zip(SIDES, self.configurations, self.results,
                                                  self.models, strict=True)],
            "divergence": self.divergence.to_json(),
        }


def not_run(question: str, search: SearchSettings) -> SearchResult:
    """The result of a side that did not run because the other was stopped."""
    from stagewise.models.events import Timings

    return SearchResult(question, search.strategy, search.beam, search.select or "",
                        search.seed, "", "cancelled", "", {s: "" for s in STAGES}, (), (), (),
                        (), Timings())


def sides(configurations: Sequence[Configuration]) -> Iterator[tuple[str, Configuration]]:
    """The configurations with their side's name."""
    return zip(SIDES, configurations, strict=True)
