"""The offline grader: a local model asked what VLMEvalKit asks GPT.

VLMEvalKit sends an answer to an LLM (GPT-3.5 or GPT-4 by default) when its rules cannot
read it, and for MathVista and MMVet always. Here a local GGUF model, loaded like any other
(:func:`stagewise.models.session.plan` and :class:`~stagewise.models.session.Session`), is
asked the same prompts (:mod:`~stagewise.models.evaluation.grader_prompts`), text only, and
its reply is read as VLMEvalKit reads GPT's:

* multiple choice (``extract_answer_from_item``): the option ``can_infer`` finds in the reply;
  VLMEvalKit asks three times at temperature 0 and then picks an option or Z at random; a
  greedy local model would repeat itself, so it is asked once, and a reply naming no option
  counts as wrong (no random pick);
* yes/no (``YOrN_auxeval``): up to five tries, at temperatures 0, 0.5, 1, 1.5 and 2, until the
  reply says yes or no;
* MathVista (``MathVista_auxeval``): answers ``post_check`` takes without the LLM are not
  sent; the others get one reply (VLMEvalKit asks again only when the API fails), at most 128
  tokens, scored by ``post_check``;
* MMVet (``MMVet_auxeval``): up to five tries, at temperatures 0 to 2, until the reply is a
  number from 0 to 1; after five, 0.

The figures then depend on the grader model, not on GPT's answers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from stagewise.models.evaluation.data import EvalItem
from stagewise.models.evaluation.grader_prompts import (
    choice_prompt,
    mathvista_prompt,
    mmvet_prompt,
    yes_no_prompt,
)
from stagewise.models.evaluation.results import EvalReport, StrategyReport
from stagewise.models.evaluation.vlmeval_rules import can_infer, mathvista_hit, yes_no
from stagewise.models.evaluation.vlmeval_scoring import item_options, read_answer

if TYPE_CHECKING:
    from stagewise.models.inference.engine import Engine
    from stagewise.models.session import LoadPlan

__all__ = [
    "GRADER_CTX",
    "Grade",
    "GradedReport",
    "LocalGrader",
    "TextModel",
    "grade",
    "grade_report",
    "plan_grader",
]

GRADER_CTX = 8192
"""The grader's context: MMVet's prompt (about 700 tokens), a long answer, and a reply."""

REPLY_TOKENS = 2048
"""VLMEvalKit's judge allows 2,048 tokens (``OpenAIWrapper``'s ``max_tokens``)."""

MATHVISTA_REPLY_TOKENS = 128
"""MathVista's judge is built with ``max_tokens=128``."""

TRIES = 5
"""Yes/no and MMVet ask up to five times, the temperature 0.5 higher each time."""


class TextModel(Protocol):
    """Something that answers a text prompt: the grader model."""

    def reply(self, prompt: str, *, max_tokens: int, temperature: float, seed: int) -> str:
        """The reply to ``prompt`` (greedy at temperature 0)."""


@dataclass(frozen=True)
class Grade:
    """One answer as scored by VLMEvalKit's rules, with the grader where they need one.

    Attributes:
        extracted: The answer as scored (an option letter or ``"Z"``, ``"Yes"``/``"No"``,
            MathVista's extracted answer); "" when nothing could be read.
        correct: Whether it counts as right (MMVet: a score of 1).
        points: MMVet's score from 0 to 1 (None for the others).
        asked: How many times the grader was asked.
        output: The grader's last reply ("" when it was not asked).
    """

    extracted: str
    correct: bool
    points: float | None = None
    asked: int = 0
    output: str = ""

    @property
    def undecided(self) -> bool:
        """Nothing could be read: the answer counts as wrong."""
        return not self.extracted and self.points is None


def grade(model: TextModel | None, prediction: str, item: EvalItem, seed: int = 0) -> Grade:
    """Score one answer of a VLMEvalKit benchmark (see the module docstring).

    Args:
        model: The grader; None scores by matching alone (VLMEvalKit's ``exact_matching``):
            what matching cannot read counts as wrong, and MMVet scores 0.
        prediction: The answer.
        item: Its question (``item.benchmark`` names the rules).
        seed: The seed of the tries at a temperature above 0.
    """
    reading = read_answer(prediction, item)
    if reading.extracted is not None:
        return Grade(reading.extracted, reading.correct)
    rules = item.benchmark
    if model is None:
        return Grade("", False, 0.0 if rules == "mmvet" else None)
    if rules == "mcq":
        choices = item_options(item)
        question = item.fields.get("question", "")
        output = model.reply(choice_prompt(question, choices, prediction),
                             max_tokens=REPLY_TOKENS, temperature=0.0, seed=seed)
        letter = can_infer(output, choices) or ""
        return Grade(letter, letter == item.answers[0], asked=1, output=output)
    if rules == "yes-no":
        prompt = yes_no_prompt(item.fields.get("question", ""), prediction)
        output = ""
        for attempt in range(TRIES):
            output = model.reply(prompt, max_tokens=REPLY_TOKENS, temperature=0.5 * attempt,
                                 seed=seed * TRIES + attempt)
            said = yes_no(output)
            if said != "Unknown":
                return Grade(said, said == item.answers[0], asked=attempt + 1, output=output)
        return Grade("", False, asked=TRIES, output=output)
    if rules == "mathvista":
        output = model.reply(mathvista_prompt(item.fields.get("question", ""), prediction),
                             max_tokens=MATHVISTA_REPLY_TOKENS, temperature=0.0, seed=seed)
        return Grade(output, mathvista_hit(output, item.fields), asked=1, output=output)
    if rules == "mmvet":
        prompt = mmvet_prompt(item.fields.get("question", ""), item.answers[0], prediction)
        output = ""
        for attempt in range(TRIES):
            output = model.reply(prompt, max_tokens=REPLY_TOKENS, temperature=0.5 * attempt,
                                 seed=seed * TRIES + attempt)
            points = _score(output)
            if points is not None:
                return Grade(output, points == 1.0, points, attempt + 1, output)
        return Grade("", False, 0.0, TRIES, output)
    raise ValueError(f"no VLMEvalKit rules named {rules!r}")


def _score(text: str) -> float | None:
    """MMVet's reply as a score: a float from 0 to 1 (``float_cvt``), else None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0.0 <= value <= 1.0 else None


@dataclass(frozen=True)
class GradedReport:
    """An evaluation report scored by VLMEvalKit's rules.

    Attributes:
        report: The report, each answer's ``correct`` as graded.
        grades: Each answer's grade, by (strategy, question id); answers that failed
            (an engine error) have none.
        grader: The grader's name ("" when there was none).
        stopped: Answers left ungraded because the grading was cancelled (counted wrong).
    """

    report: EvalReport
    grades: dict[tuple[str, str], Grade]
    grader: str = ""
    stopped: int = 0

    @property
    def asked(self) -> int:
        """How many times the grader was asked in all."""
        return sum(g.asked for g in self.grades.values())


GradeProgress = Callable[[int, int], None]
"""Called with (answers graded, answers to grade) after each answer the grader reads."""


def grade_report(report: EvalReport, items: Sequence[EvalItem], model: TextModel | None,
                 *, grader: str = "", cancel: threading.Event | None = None,
                 progress: GradeProgress | None = None) -> GradedReport:
    """Grade every answer of a report whose question has VLMEvalKit rules.

    Args:
        report: The evaluation's report.
        items: Its questions.
        model: The grader (None: matching alone).
        grader: Its name, for the report.
        cancel: Set it to stop asking the grader; answers not yet graded count as wrong.
        progress: Told of each answer the grader was needed for.

    Returns:
        The report with every graded answer's ``correct`` replaced, and the grades.
    """
    by_id = {item.id: (index, item) for index, item in enumerate(items)}
    cancel = cancel or threading.Event()
    pending = [(s.config.name, r) for s in report.strategies for r in s.items
               if not r.error and r.item_id in by_id and by_id[r.item_id][1].benchmark
               and not read_answer(r.prediction, by_id[r.item_id][1]).decided]
    waiting = {(name, r.item_id) for name, r in pending}
    grades: dict[tuple[str, str], Grade] = {}
    stopped = done = 0
    strategies = []
    for strategy in report.strategies:
        name = strategy.config.name
        results = []
        for result in strategy.items:
            index, item = by_id.get(result.item_id, (0, None))
            if result.error or item is None or not item.benchmark:
                results.append(result)
                continue
            asking = (name, result.item_id) in waiting and model is not None
            if asking and cancel.is_set():
                stopped += 1
                asking = False
            marks = grade(model if asking else None, result.prediction, item, index)
            grades[(name, result.item_id)] = marks
            results.append(replace(result, correct=marks.correct))
            if asking:
                done += 1
                if progress:
                    progress(done, len(pending))
        strategies.append(StrategyReport(strategy.config, tuple(results)))
    graded = replace(report, strategies=tuple(strategies))
    return GradedReport(graded, grades, grader if model is not None else "", stopped)


def plan_grader(model: Path, mmproj: Path | None, *, threads: int | None = None,
                gpu_layers: int = -1) -> LoadPlan:
    """The load of a grader model (checked to fit; nothing loaded yet).

    Args:
        model: Its text GGUF or library id.
        mmproj: Its projector (None: the one beside it). A model without one cannot be
            loaded: every model Stagewise loads is a vision pair.
        threads: CPU threads (None: auto).
        gpu_layers: Layers to offload (-1: all that fit).

    Raises:
        StagewiseError: No projector is found, or the load does not fit this machine.
    """
    from stagewise.models.inference.engine_settings import EngineSettings
    from stagewise.models.session import plan

    return plan(model, mmproj, EngineSettings(n_ctx=GRADER_CTX, threads=threads,
                                              gpu_layers=gpu_layers))


class LocalGrader:
    """A loaded model answering the grader's prompts, text only
    (:func:`stagewise.models.inference.text_generation.generate_text`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def reply(self, prompt: str, *, max_tokens: int, temperature: float, seed: int) -> str:
        from stagewise.models.inference.sampling_settings import GREEDY, SamplingSettings
        from stagewise.models.inference.text_generation import generate_text

        sampling = GREEDY if temperature <= 0 else SamplingSettings(
            temperature=temperature, top_p=1.0, top_k=0)
        return generate_text(self.engine, prompt, max_tokens=max_tokens, sampling=sampling,
                             seed=seed)
