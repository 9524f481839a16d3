"""Evaluation questions read from a jsonl file, one question per line, or a VLMEvalKit TSV.

Two jsonl formats are accepted, also mixed in one file:

* LLaVA-CoT-100k: ``{"id", "image", "conversations": [{"from": "human", "value": Q},
  {"from": "gpt", "value": A}]}``. The gold answer is the content of A's ``<CONCLUSION>``
  stage; all four gold stages are kept for scoring the judge. A marker line ``<image>`` at
  the start or end of Q is dropped. Further human/gpt pairs after the first are
  *follow-ups*, asked in turn with the earlier questions and the conclusions given to them
  in the prompt, as the window asks a follow-up (``python -m
  stagewise.models.build.puzzles OUT --follow-ups`` writes such records).
* Plain VQA: ``{"image", "question", "answer"}`` (or ``"answers"``: a list, any of which
  counts), with an optional ``"id"``.

An image path is relative to the jsonl file's folder unless it is absolute.

The third format is a VLMEvalKit benchmark ``.tsv`` (MMStar, MMBench, AI2D, ScienceQA,
HallusionBench...), one row per question with the image base64-encoded in it; it is read by
:mod:`~stagewise.models.evaluation.vlmevalkit`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stagewise.models.errors import StagewiseError
from stagewise.models.stages import STAGES, Stage, parse_answer

__all__ = ["EvalDataError", "EvalItem", "FollowUpItem", "item_kind", "read_items",
           "strip_image_marker"]


class EvalDataError(StagewiseError):
    """An evaluation file that cannot be read, or a record in it that is unusable."""


@dataclass(frozen=True)
class FollowUpItem:
    """A follow-up question of an evaluation record and its gold answers."""

    question: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class EvalItem:
    """One evaluation question.

    Attributes:
        id: The record's id (``"line-N"`` when it has none; ``"<stem>-<index>"`` for a TSV).
        image: The image file, resolved against the jsonl's folder (for a TSV: the decoded
            picture, written to the cache).
        question: The question, without an ``<image>`` marker line.
        answers: The gold answers; a prediction matching any of them is right.
        stages: The gold stages (LLaVA-CoT records only; empty otherwise).
        kind: The question's kind, from an id like ``"test-000012-count"`` (a TSV row's
            ``category``); ``""`` if none.
        line: The line of the jsonl file it came from (1-based; for a TSV, the row, the
            header not counted).
        benchmark: The VLMEvalKit rules its answers are read by ("mcq", "yes-no",
            "mathvista", "mmvet"; see :mod:`~stagewise.models.evaluation.benchmarks`), or
            "" for Stagewise's own (every jsonl record).
        fields: A TSV row's cells but the picture, by column ("" for a missing one), as
            those rules read them (options, index, ``l2-category``...); empty for jsonl.
        follow_ups: Later questions about the same image, asked in turn after this one
            (LLaVA-CoT records with more than one human/gpt pair).
    """

    id: str
    image: Path
    question: str
    answers: tuple[str, ...]
    stages: dict[Stage, str] = field(default_factory=dict)
    kind: str = ""
    line: int = 0
    benchmark: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    follow_ups: tuple[FollowUpItem, ...] = ()


_KIND_ID = re.compile(r"[A-Za-z]+-\d+-(?:[\w-]*-)?([A-Za-z][A-Za-z0-9_]*)")
_IMAGE_MARKER = "<image>"


def item_kind(item_id: str) -> str:
    """The kind named at the end of an id such as ``"test-000012-count"`` (else ``""``)."""
    match = _KIND_ID.fullmatch(item_id)
    return match[1] if match else ""


def read_items(path: str | Path, limit: int | None = None) -> list[EvalItem]:
    """Read the questions of a jsonl file or a VLMEvalKit ``.tsv``.

    Args:
        path: The jsonl file, or a ``.tsv`` (see
            :func:`stagewise.models.evaluation.vlmevalkit.read_tsv`).
        limit: Read only the first ``limit`` questions (blank lines do not count).

    Returns:
        The questions, in file order.

    Raises:
        EvalDataError: The file is missing or unreadable, a line is not a JSON object, a
            record has no question, answer or image, or its image does not exist. The
            message names the file and line (a TSV: see ``read_tsv``).
    """
    path = Path(path)
    if path.is_dir():
        raise EvalDataError(f"{path}: this is a folder, not a jsonl file")
    if path.suffix.lower() == ".tsv":
        from stagewise.models.evaluation.vlmevalkit import read_tsv  # it imports this module

        return read_tsv(path, limit)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvalDataError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise EvalDataError(f"{path}: not a UTF-8 text file") from None
    except OSError as error:
        raise EvalDataError(f"{path}: cannot be read ({error.strerror or error})") from None
    items: list[EvalItem] = []
    for number, record in _records(path, text):
        if limit is not None and len(items) >= limit:
            break
        items.append(_item(path, number, record))
    if not items:
        raise EvalDataError(f"{path}: no questions in this file")
    return items


def _records(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise EvalDataError(f"{path}:{number}: bad JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise EvalDataError(f"{path}:{number}: not a JSON object")
        yield number, record


def _item(path: Path, number: int, record: dict[str, Any]) -> EvalItem:
    where = f"{path}:{number}"
    follow: tuple[FollowUpItem, ...] = ()
    if "conversations" in record:
        question, answers, stages = _llava_cot(where, record["conversations"])
        follow = _follow_ups(where, record["conversations"])
    else:
        question, answers, stages = _plain(where, record)
    image = record.get("image")
    if not isinstance(image, str) or not image.strip():
        raise EvalDataError(f"{where}: the record has no image")
    image_path = Path(image)
    if not image_path.is_absolute():
        image_path = path.parent / image_path
    if not image_path.is_file():
        raise EvalDataError(f"{where}: image {image_path} does not exist")
    raw_id = record.get("id")
    item_id = str(raw_id) if raw_id not in (None, "") else f"line-{number}"
    return EvalItem(item_id, image_path, question, answers, stages, item_kind(item_id), number,
                    follow_ups=follow)


def _llava_cot(where: str, turns: object) -> tuple[str, tuple[str, ...], dict[Stage, str]]:
    if not isinstance(turns, list):
        raise EvalDataError(f"{where}: \"conversations\" is not a list")
    question = _first_turn(turns, "human")
    answer = _first_turn(turns, "gpt")
    if not question:
        raise EvalDataError(f"{where}: the record has no question (no \"human\" turn)")
    if not answer:
        raise EvalDataError(f"{where}: the record has no answer (no \"gpt\" turn)")
    parsed = parse_answer(answer)
    if not any(parsed.stages.values()):  # an untagged answer is the answer itself
        return strip_image_marker(question), (answer.strip(),), {}
    if not parsed.conclusion:
        raise EvalDataError(f"{where}: the answer has no <CONCLUSION> stage")
    stages = {stage: parsed.stages[stage] for stage in STAGES if parsed.stages[stage]}
    return strip_image_marker(question), (parsed.conclusion,), stages


def _follow_ups(where: str, turns: list[object]) -> tuple[FollowUpItem, ...]:
    """The human/gpt pairs after the first: each question and its gold conclusion."""
    said = [(t.get("from"), t.get("value")) for t in turns
            if isinstance(t, dict) and t.get("from") in ("human", "gpt")]
    out = []
    for index in range(2, len(said) - 1, 2):
        (asker, question), (answerer, answer) = said[index], said[index + 1]
        if (asker, answerer) != ("human", "gpt") or not all(
                isinstance(v, str) and v.strip() for v in (question, answer)):
            raise EvalDataError(f"{where}: turn {index + 1} is not a question followed by "
                                "its answer")
        parsed = parse_answer(answer)
        gold = parsed.conclusion if any(parsed.stages.values()) else answer.strip()
        if not gold:
            raise EvalDataError(f"{where}: the answer to follow-up {question.strip()!r} has "
                                "no <CONCLUSION> stage")
        out.append(FollowUpItem(strip_image_marker(question), (gold,)))
    return tuple(out)


def _first_turn(turns: list[object], speaker: str) -> str:
    for turn in turns:
        if isinstance(turn, dict) and turn.get("from") == speaker:
            value = turn.get("value")
            return value if isinstance(value, str) else ""
    return ""


def _plain(where: str, record: dict[str, Any]) -> tuple[str, tuple[str, ...], dict[Stage, str]]:
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise EvalDataError(f"{where}: the record has no question")
    answers = [_answer_text(a) for a in _as_list(record.get("answers"))]
    answers += [_answer_text(record.get("answer"))]
    answers = [a for a in answers if a]
    if not answers:
        raise EvalDataError(f"{where}: the record has no answer")
    return strip_image_marker(question), tuple(dict.fromkeys(answers)), {}


def _as_list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _answer_text(value: object) -> str:
    """An answer as text: a string, a number, or a VQAv2-style ``{"answer": ...}``."""
    if isinstance(value, dict):
        value = value.get("answer")
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    return value.strip() if isinstance(value, str) else ""


def strip_image_marker(question: str) -> str:
    """The question without the ``<image>`` marker that LLaVA-style data puts at its start or end.

    Args:
        question: A human turn, e.g. ``"<image>\\nHow many circles?"``.

    Returns:
        The text stripped, with one marker at the start and one at the end removed.
    """
    text = question.strip()
    if text.startswith(_IMAGE_MARKER):
        text = text[len(_IMAGE_MARKER):]
    if text.endswith(_IMAGE_MARKER):
        text = text[: -len(_IMAGE_MARKER)]
    return text.strip()
