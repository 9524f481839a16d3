"""VLMEvalKit's rules for reading an answer, written from its source (open-compass/VLMEvalKit).

Each function follows one rule of VLMEvalKit's, quirks included, so that a figure computed
here can be laid next to one VLMEvalKit computed; where a rule is odd, the docstring says so.

* :func:`can_infer` — which option a multiple-choice answer gives, without an LLM
  (``vlmeval/utils/matching_util.py``: ``can_infer``, ``can_infer_option``,
  ``can_infer_text``);
* :func:`yes_no` — the yes or no a HallusionBench answer gives
  (``vlmeval/dataset/utils/yorn.py``: ``YOrN_Extraction``, with ``process_punctuation`` of
  ``vlmeval/smp/misc.py``);
* :func:`mathvista_prefetch` and :func:`mathvista_hit` — MathVista's check of an answer
  (``vlmeval/dataset/utils/mathvista.py``: ``post_check``);
* :func:`circular_group` — the group of a rotated copy in CircularEval (``index % 1e6``,
  ``vlmeval/dataset/utils/multiple_choice.py``: ``mcq_circular_eval``).

Qt-free, and no llama.cpp.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping

__all__ = [
    "CIRCULAR_STEP",
    "can_infer",
    "can_infer_option",
    "can_infer_text",
    "circular_group",
    "is_chinese",
    "mathvista_choices",
    "mathvista_hit",
    "mathvista_prefetch",
    "process_punctuation",
    "yes_no",
]

CIRCULAR_STEP = 1_000_000
"""A rotated copy of question ``i`` has the index ``i + k * CIRCULAR_STEP`` (``g_index`` is
``int(index % 1e6)`` in ``mcq_circular_eval``)."""

_API_FAILURE = "Failed to obtain answer via API"
_REFUSALS = (  # can_infer_option: an answer holding one of these gives option Z
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
_OPTION_BREAKS = ".()[],:;!*#{}"  # can_infer_option: each becomes a blank before splitting
_VERBOSE_ANSWER = re.compile(r"(?:correct\s+)?answer\s+is\s+\**([ABCD])\**", re.IGNORECASE)
_PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
                "@", "`", ",", "?", "!")
_COMMA_IN_NUMBER = re.compile(r"(\d)(,)(\d)")
_LONE_PERIOD = re.compile(r"(?<!\d)\.(?!\d)")
_PERIODS_DROPPED = int(re.UNICODE)  # process_punctuation passes re.UNICODE (32) as the count
_CHINESE = re.compile("[\u4e00-\u9fff]")


def can_infer_option(answer: str, choices: Mapping[str, str]) -> str | None:
    """The option letter an answer gives by its letter, as VLMEvalKit's ``can_infer_option``.

    The rules, in order:

    1. an answer holding one of VLMEvalKit's refusal phrases ("Cannot determine the
       answer", ...) gives ``"Z"`` (no option);
    2. the answer is split into words after each of ``.()[],:;!*#{}`` becomes a blank;
       when exactly one option letter stands as a word, it is the answer if its first
       place is among the last four words ("B", "B is correct", "I choose (B) because");
    3. when no option letter stands as a word but ``Z`` does, ``"Z"``;
    4. else "answer is X" or "correct answer is **X**" (any case, X one of A to D, an option).

    The check VLMEvalKit makes for "A" as an article runs only with its ``VERBOSE``
    setting on, so it is left out. Rule 4 matches a lower-case letter too ("the answer is a
    dog" gives A), as VLMEvalKit's does.

    Returns:
        The letter, ``"Z"``, or None when the letter cannot be told.
    """
    if _API_FAILURE in answer:
        return None
    if any(refusal in answer for refusal in _REFUSALS):
        return "Z"
    text = answer
    for mark in _OPTION_BREAKS:
        text = text.replace(mark, " ")
    words = text.split()
    standing = [letter for letter in choices if letter in words]
    if len(standing) == 1:
        letter = standing[0]
        if words.index(letter) > len(words) - 5:
            return letter
    elif not standing and "Z" in words:
        return "Z"
    match = _VERBOSE_ANSWER.search(answer)
    if match and match[1].upper() in choices:
        return match[1].upper()
    return None


def can_infer_text(answer: str, choices: Mapping[str, str]) -> str | None:
    """The option whose text an answer holds, as VLMEvalKit's ``can_infer_text``.

    An answer longer than twice the options' texts together gives nothing; otherwise the
    option is the one (and only one) whose text, lower-cased, occurs in the lower-cased
    answer ("The shear modulus is 5 MPa." gives the option "5 MPa").
    """
    lowered = answer.lower()
    if len(lowered) > 2 * sum(len(text) for text in choices.values()):
        return None
    found = [letter for letter, text in choices.items() if text.lower() in lowered]
    return found[0] if len(found) == 1 else None


def can_infer(answer: str, choices: Mapping[str, str]) -> str | None:
    """The option an answer gives: by its letter, else by its text (VLMEvalKit's ``can_infer``).

    Args:
        answer: The model's answer.
        choices: The options, by letter, in letter order.

    Returns:
        A letter of ``choices``, ``"Z"`` (the answer names no option, or refuses), or None
        when matching cannot tell (VLMEvalKit then asks its LLM, see
        :mod:`~stagewise.models.evaluation.grader`).
    """
    return can_infer_option(answer, choices) or can_infer_text(answer, choices)


def process_punctuation(text: str) -> str:
    """VLMEvalKit's ``process_punctuation`` (from the VQA evaluation).

    Each of ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !`` is dropped when the original text
    has it beside a blank, or has a comma inside a number anywhere, and becomes a blank
    otherwise; then the first 32 periods not beside a digit are dropped (VLMEvalKit passes
    ``re.UNICODE``, 32, where the count goes).
    """
    out = text
    number_comma = _COMMA_IN_NUMBER.search(text) is not None
    for mark in _PUNCTUATION:
        beside_blank = f"{mark} " in text or f" {mark}" in text
        out = out.replace(mark, "" if beside_blank or number_comma else " ")
    return _LONE_PERIOD.sub("", out, count=_PERIODS_DROPPED)


def yes_no(answer: str) -> str:
    """``"Yes"``, ``"No"`` or ``"Unknown"``: VLMEvalKit's ``YOrN_Extraction``.

    The answer, lower-cased and through :func:`process_punctuation`, is split into words:
    "yes" without "no" is Yes ("Yes, the image shows two cats."), "no" without "yes" is No
    ("No, it does not."), and anything else is Unknown (VLMEvalKit then asks its LLM).
    """
    words = process_punctuation(answer.lower()).split()
    if "yes" in words and "no" not in words:
        return "Yes"
    if "no" in words and "yes" not in words:
        return "No"
    return "Unknown"


def circular_group(index: str) -> int:
    """The CircularEval group of a row: its integer index modulo :data:`CIRCULAR_STEP`.

    Raises:
        ValueError: The index is not a whole number (VLMEvalKit asserts that it is).
    """
    return int(index) % CIRCULAR_STEP


def is_chinese(text: str) -> bool:
    """Whether the text holds a CJK ideograph (VLMEvalKit's ``cn_string``)."""
    return _CHINESE.search(text) is not None


def mathvista_choices(fields: Mapping[str, str]) -> dict[str, str]:
    """A MathVista row's options by letter, from its ``choices`` cell (a Python list).

    Raises:
        ValueError: The cell is not a list.
    """
    try:
        listed = ast.literal_eval(fields.get("choices", ""))
    except (ValueError, SyntaxError):
        raise ValueError(f"choices {fields.get('choices', '')!r} is not a list") from None
    if not isinstance(listed, list | tuple):
        raise ValueError(f"choices {fields.get('choices', '')!r} is not a list")
    return {chr(ord("A") + i): str(text) for i, text in enumerate(listed)}


def mathvista_prefetch(prediction: str, fields: Mapping[str, str]) -> str | None:
    """MathVista's answer read without the LLM (``post_check`` with ``prefetch=True``).

    A multiple-choice question (``question_type`` ``multi_choice``) takes the option
    :func:`can_infer` finds, right or wrong; an integer or float question takes the
    prediction when it is that number and equals the answer; any other question is taken
    only when its answer reads "None" (see :func:`mathvista_hit`). A value that is false in
    Python (no option, or a right answer of 0) is not taken, as in VLMEvalKit, and the LLM
    is asked.

    Returns:
        The answer to score (the option letter, or the number as written), or None.
    """
    if fields.get("question_type") == "multi_choice":
        return can_infer(prediction, mathvista_choices(fields))
    if fields.get("answer_type") not in ("integer", "float"):  # see mathvista_hit
        return "None" if fields.get("answer", "") == "None" else None
    value = _number(prediction, fields.get("answer_type", ""))
    if value is not None and value and value == _number(fields.get("answer", ""),
                                                        fields.get("answer_type", "")):
        return prediction
    return None


def mathvista_hit(extracted: str, fields: Mapping[str, str]) -> bool:
    """Whether MathVista's extracted answer is right (``post_check`` with ``prefetch=False``).

    Multiple choice: :func:`can_infer` on the extracted answer equals ``answer_option``.
    Integer and float answers: the extracted answer read as that type equals the answer.
    Any other ``answer_type`` (text, list): VLMEvalKit compares ``str(None)`` with the
    answer there (it never sets its ``res``), so only an answer reading "None" counts.
    """
    kind = fields.get("answer_type", "")
    if fields.get("question_type") == "multi_choice":
        return can_infer(extracted, mathvista_choices(fields)) == fields.get("answer_option")
    if kind in ("integer", "float"):
        value = _number(extracted, kind)
        return value is not None and value == _number(fields.get("answer", ""), kind)
    return fields.get("answer", "") == "None"


def _number(text: str, kind: str) -> float | int | None:
    """``int(text)`` or ``float(text)`` as Python reads them; None when it cannot."""
    try:
        if kind == "integer":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        return None
    return None
