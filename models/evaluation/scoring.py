"""Is a predicted answer right? Normalised exact match, and option letters for multiple choice.

An item read from a VLMEvalKit benchmark (its ``benchmark`` set) is scored by VLMEvalKit's
rules instead (:mod:`~stagewise.models.evaluation.vlmeval_scoring`); what follows is
Stagewise's own scoring, for jsonl question files and TSVs VLMEvalKit has no rules for.

Normalisation (:func:`normalise`): lower case, punctuation at the ends dropped, the articles
"a", "an" and "the" dropped, blanks collapsed, and the number words zero to twenty written as
digits, so ``"Two."`` matches ``"2"`` and ``"The dog"`` matches ``"dog"``.

Multiple choice: when the question lists options, on lines of their own (``"A. red"``,
``"A) red"``, ``"(A) red"``, ``"A: red"``, as MMBench, AI2D and ScienceQA do) or inline after
"Options:" or "Choices:" (``"Options: A: 15 MPa, B: 5 MPa, …"`` as MMStar does, ``"A. 4, B. 8"``),
and the gold answer is one of their letters, a prediction is right if the letter it gives
(``"B"``, ``"(B)"``, ``"B: 5 MPa"``, ``"The answer is B."``) is the gold letter, or if it
states exactly the text of the right option (``"5 MPa"``): stricter than VLMEvalKit's
``can_infer``. A gold answer that is a bare letter is matched by the letter a prediction
gives even when the question lists no options.
"""

from __future__ import annotations

import re

from stagewise.models.evaluation.data import EvalItem
from stagewise.models.evaluation.vlmeval_scoring import read_answer

__all__ = ["answer_letter", "is_correct", "normalise", "options", "score"]

_NUMBER_WORDS = {
    word: str(value) for value, word in enumerate((
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
        "eighteen", "nineteen", "twenty",
    ))
}
_ARTICLES = frozenset({"a", "an", "the"})
# punctuation dropped at either end of an answer, and of each word; "-" and "." before a
# digit (a sign, a decimal point) and "%", "$" are kept
_END_PUNCTUATION = "\"'`´‘’“”«»()[]{}<>*_,;:!?."
_OPTION_LINE = re.compile(r"^[ \t]*(?:\(([A-Z])\)|([A-Z])[.):])[ \t]*(\S.*?)[ \t]*$",
                          re.MULTILINE)
_INLINE_LIST = re.compile(r"\b(?:options|choices)\s*:\s*(.+)", re.IGNORECASE | re.DOTALL)
_INLINE_OPTION = re.compile(r"(?:^|(?<=[\s,;]))(?:\(([A-Z])\)|([A-Z])[.):])\s*")
_ALONE_LETTER = re.compile(r"\(?([A-Z])\)?[.:]?", re.IGNORECASE)
_LEADING_LETTER = re.compile(r"\(?([A-Z])(?:\)|[.:])\s", re.IGNORECASE)
_STATED_LETTER = re.compile(
    r"\b(?:answer|option|choice)(?:\s+is)?(?:\s*[:\-])?\s*\(?([A-Z])\)?(?![A-Za-z0-9])",
    re.IGNORECASE,
)


def normalise(text: str) -> str:
    """The answer as compared: see the module docstring."""
    words = []
    for raw in text.lower().split():
        word = _strip_end(raw)
        if not word or word in _ARTICLES:
            continue
        words.append(_NUMBER_WORDS.get(word, word))
    return " ".join(words)


def _strip_end(word: str) -> str:
    word = word.rstrip(_END_PUNCTUATION)
    keep = word[1:2].isdigit() and word[:1] == "."  # ".5" keeps its point
    return word if keep else word.lstrip(_END_PUNCTUATION)


def options(question: str) -> dict[str, str]:
    """The options a question lists, by letter (empty if fewer than 2): on lines of their
    own, or else inline after "Options:" or "Choices:" with consecutive letters from A."""
    found: dict[str, str] = {}
    for match in _OPTION_LINE.finditer(question):
        letter = match[1] or match[2]
        found.setdefault(letter, match[3])
    if len(found) >= 2:
        return found
    return _inline_options(question)


def _inline_options(question: str) -> dict[str, str]:
    listing = _INLINE_LIST.search(question)
    if not listing:
        return {}
    text = listing[1].strip()
    marks = []
    expected = "A"
    for match in _INLINE_OPTION.finditer(text):  # only A, B, C... in turn are options
        if (match[1] or match[2]) == expected:
            marks.append(match)
            expected = chr(ord(expected) + 1)
    found = {}
    for i, match in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        value = text[match.end():end].strip().rstrip(",;").strip()
        if i + 1 == len(marks):
            value = value.splitlines()[0].strip() if value else value
        if value:
            found[match[1] or match[2]] = value
    return found if len(found) >= 2 else {}


def answer_letter(prediction: str, letters: str | None = None) -> str | None:
    """The option letter a prediction gives, or None.

    Args:
        prediction: The predicted answer.
        letters: The letters that are options (default: any capital letter).

    Returns:
        The letter of ``"B"``, ``"B."``, ``"(B)"``, ``"**B**"``, ``"B) blue"``,
        ``"The answer is B"``...
    """
    text = prediction.strip().strip("*_`").strip()  # "**B**": Markdown emphasis
    for pattern, whole in ((_ALONE_LETTER, True), (_LEADING_LETTER, False)):
        match = pattern.fullmatch(text) if whole else pattern.match(text)
        if match and (letters is None or match[1].upper() in letters):
            return match[1].upper()
    for match in _STATED_LETTER.finditer(text):
        letter = match[1].upper()
        at_end = len(text) - match.end() < 2  # "the answer is a dog" gives no letter
        if (match[1].isupper() or at_end) and (letters is None or letter in letters):
            return letter
    return None


def is_correct(prediction: str, gold: str, question: str = "") -> bool:
    """Whether ``prediction`` matches one gold answer (see the module docstring)."""
    choices = options(question)
    gold_letter = _gold_letter(gold, choices)
    if choices and gold_letter in choices:
        if answer_letter(prediction, "".join(choices)) == gold_letter:
            return True
        return _same(prediction, choices[gold_letter]) or _same(_drop_letter(prediction),
                                                              choices[gold_letter])
    if _same(prediction, gold):
        return True
    if choices:  # gold is an option's text: a letter naming that option is right too
        letter = answer_letter(prediction, "".join(choices))
        return letter is not None and _same(choices[letter], gold)
    bare = _ALONE_LETTER.fullmatch(gold.strip())
    if bare and bare[1].isupper():  # "B" with no options found: the letter given counts
        return answer_letter(prediction) == bare[1]
    return False


def score(prediction: str, item: EvalItem) -> bool:
    """Whether ``prediction`` is right for ``item``: by VLMEvalKit's rules for an item of a
    VLMEvalKit benchmark (undecided counts as wrong until a grader reads it), else when it
    matches any of its gold answers."""
    if item.benchmark:
        return read_answer(prediction, item).correct
    return any(is_correct(prediction, gold, item.question) for gold in item.answers)


def _same(a: str, b: str) -> bool:
    na = normalise(a)
    return bool(na) and na == normalise(b)


def _gold_letter(gold: str, choices: dict[str, str]) -> str | None:
    """The option a gold answer names by letter: ``"B"``, ``"(b)"``, or ``"B. blue"``."""
    if not choices:
        return None
    text = gold.strip()
    match = _ALONE_LETTER.fullmatch(text)
    if match:
        return match[1].upper()
    match = _LEADING_LETTER.match(text)
    letter = match[1].upper() if match else None
    if letter in choices and _same(text[match.end():], choices[letter]):
        return letter
    return None


def _drop_letter(prediction: str) -> str:
    """``"B. blue"`` → ``"blue"``; other text unchanged."""
    match = _LEADING_LETTER.match(prediction.strip())
    return prediction.strip()[match.end():] if match else prediction
