"""What the model is asked when it judges its own candidates (after the LLaVA-CoT paper).

The judge sees the image, the question, an optional hint and two responses, and answers
"Since <reason>, I choose response <1|2>." Before reasoning candidates meet, a text-only
check asks whether each one's reasoning is correct assuming the caption is true; a
candidate judged wrong loses.

Two wordings (:data:`WORDINGS`):

* ``short``: this project's, one sentence a stage, the form first and the responses last
  (the demo model was trained as a judge on it); its check is a greedy "Yes" or "No";
* ``reference``: the LLaVA-CoT reference's (``inference/VLMEvalKit/inference_demo.py``,
  ``judge``): its long per-stage instruction before the responses and its reminder after
  them, its "Repsonse" spelt as it spells it; its check is a free reply, failed when it says
  "incorrect". The reference's indentation inside its check prompt (a code artifact) is left
  out.

A verdict is read as the reference reads it (:func:`read_choice`): response 1 when the reply
says "I choose response 1", else response 2.
"""

from __future__ import annotations

import re

from stagewise.models.stages import Stage

CHECK_GRAMMAR = 'root ::= "Yes" | "No"\n'

_ASK = {
    Stage.SUMMARY: "Which response better outlines how to approach the question, without "
                   "diving into the solution?",
    Stage.CAPTION: "Which response describes the parts of the image that matter for the "
                   "question more thoroughly and accurately?",
    Stage.REASONING: "Which response reasons from the description to an answer better, with "
                     "fewer errors?",
    Stage.CONCLUSION: "Which response agrees better with the description and the reasoning, "
                      "and gives an answer rather than refusing?",
}
_ASK_WHOLE = "Which response answers the question better, with a more accurate description " \
             "of the image and sounder reasoning?"
_ASK_SENTENCE = "The hint is the answer written so far. Which response is the better next " \
                "sentence of that answer?"

WORDINGS = ("short", "reference")
"""The judge's wordings: this project's short one and the reference's."""

CHOICE_PHRASE = "I choose response "
"""What a verdict says before the response it chooses."""

_REFERENCE = {
    # stage (None: whole answers): (instruction before the responses, reminder after them)
    Stage.SUMMARY: (
        "Now you act as a judge, helping me determine which of the two texts I provide better "
        "provides a summary of what it should do to solve the question. The summary should "
        "focus on outlining the main approach instead of stating specific analytical "
        "reasoning or math formula.",
        "Please note that a better summary should focus on outlining the main approach "
        "instead of stating specific analytical reasoning or math formula."),
    Stage.CAPTION: (
        "Now you act as a judge, helping me determine which of the two texts I provide better "
        "summarizes the information in the image related to the question, and has fewer "
        "errors. It is essential that the captions are as thorough as possible while "
        "remaining accurate, capturing as many details as possible rather than providing only "
        "general commentary.",
        "Please note that a better caption should be as thorough as possible while remaining "
        "accurate, capturing as many details as possible rather than providing only general "
        "commentary."),
    Stage.REASONING: (
        "Now you act as a judge, helping me determine which of the two texts I provide better "
        "explains the reasoning process to solve the question, and has fewer errors. Begin by "
        "thoroughly reviewing the question, followed by an in-depth examination of each "
        "answer individually, noting any differences. Subsequently, analyze these differences "
        "to determine which response demonstrates stronger reasoning and provide a clear "
        "conclusion.",
        "Begin by thoroughly reviewing the question, followed by an in-depth examination of "
        "each answer individually, noting any differences. Subsequently, analyze these "
        "differences to determine which response demonstrates stronger reasoning and provide "
        "a clear conclusion."),
    Stage.CONCLUSION: (
        "Now you act as a judge, helping me determine which of the two texts I provide offers "
        "a more effective conclusion to the question. The conclusion should align with the "
        "reasoning presented in the hint. The conclusion should never refuse to answer the "
        "question.",
        "Please note that a better conclusion should align with the reasoning presented in "
        "the hint. The conclusion should never refuse to answer the question."),
    None: (
        "Now you act as a judge, helping me determine which of the two texts I provide better "
        "answers the question.", ""),
}
_REFERENCE_SENTENCE = (
    "Now you act as a judge, helping me determine which of the two texts I provide is a "
    "better next sentence for the answer to the question.", "")
_REFERENCE_FORMAT = (
    " Please strictly follow the following format requirements when outputting, and "
    "don\u2019t have any other unnecessary words.\n\nOutput format: \"Since [reason], I choose "
    "response [1/2].\"")
_REFERENCE_CHECK = (
    "Now you act as a judge, helping me determine whether the reasoning process in the given "
    "text is correct and accurate based on the given information.\n"
    "You should assume that the given information about the image is correct.\n"
    "You should only consider the reasoning process itself, not the correctness of the "
    "background information.\n"
    "If the reasoning process invovles any calculations, you should verify the accuracy of "
    "the calculations.\n"
    "You should output 'correct' if you don't find any errors in the reasoning process, and "
    "'incorrect' if you find any errors.")


def judge_text(stage: Stage | None, question: str, first: str, second: str,
               hint: str = "", *, sentence: bool = False, wording: str = "short") -> str:
    """The user turn of a pairwise judgement (the image goes before it).

    In the short wording the task comes first and the two responses last, so that the
    judgements of one question share everything up to "Response 1" in the cache. With
    ``sentence``, the paper's sentence-level question: which response is the better next
    sentence. The reference wording is the reference's (:data:`_REFERENCE`).
    """
    if wording == "reference":
        return _reference_judge_text(stage, question, first, second, hint, sentence)
    ask = _ASK_SENTENCE if sentence else _ASK[stage] if stage else _ASK_WHOLE
    parts = [
        f"{ask} Answer in the form \"Since <reason>, I choose response <1 or 2>.\"",
        f"Question: {question.strip()}",
    ]
    if hint:
        parts.append(f"Hint: {hint.strip()}")
    parts += [f"Response 1: {first.strip()}", f"Response 2: {second.strip()}"]
    return "\n\n".join(parts)


def _reference_judge_text(stage: Stage | None, question: str, first: str, second: str,
                          hint: str, sentence: bool) -> str:
    ask, remind = _REFERENCE_SENTENCE if sentence else _REFERENCE[stage]
    text = f"{ask}\n\nQuestion: {question.strip()}"
    if hint:
        text += f"\n\nHint about the Question: {hint.strip()}"
    text += f"\nRepsonse 1: {first.strip()}\nRepsonse 2: {second.strip()}"
    return f"{text}\n\n{remind}{_REFERENCE_FORMAT}"


def reference_check_text(caption: str, reasoning: str) -> str:
    """The reference's text-only check of one reasoning: a free reply that fails it when it
    says "incorrect"."""
    return (f"{_REFERENCE_CHECK}\n\nGiven Information: {caption.strip()}\n\n"
            f"Reasoning Process: {reasoning.strip()}")


def read_choice(text: str) -> tuple[int, bool]:
    """The response a judge's reply chooses, as the reference reads it: 1 when it says "I
    choose response 1", else 2; and whether the reply named a response at all."""
    if f"{CHOICE_PHRASE}1" in text:
        return 1, True
    return 2, f"{CHOICE_PHRASE}2" in text


def choice_stop(text: str) -> int | None:
    """Where a judge's reply ends: just after it names a response (None until then)."""
    for digit in "12":
        at = text.find(f"{CHOICE_PHRASE}{digit}")
        if at >= 0:
            end = at + len(CHOICE_PHRASE) + 1
            return end + 1 if text[end:end + 1] == "." else end
    return None


def check_text(question: str, caption: str, reasoning: str) -> str:
    """The text-only correctness check for one reasoning candidate."""
    return (
        f"Question: {question.strip()}\n\n"
        f"Description of the image (assume it is true): {caption.strip()}\n\n"
        f"Reasoning: {reasoning.strip()}\n\n"
        "Assuming the description is true, is this reasoning, including any arithmetic, "
        "correct? Answer Yes or No."
    )


_RESPONSE_WORD = re.compile(
    r"\b(?P<word>response)\s+(?P<digit>[12])\b"
    r"|\b(?P<lead>(?:the\s+)?(?P<place>first|second))\s+response\b", re.IGNORECASE)


def name_candidates(reason: str, first: int, second: int) -> str:
    """``reason`` with the judge's "response 1" / "response 2" (places in the judged pair,
    also "the first/second response") named as the candidates they were, counted from 1.

    Args:
        reason: The judge's reason, in its own words.
        first: The candidate (0-based) the judge saw as response 1.
        second: The candidate (0-based) it saw as response 2.

    Returns:
        The reason naming "candidate N" where it named a response.
    """
    def named(m: re.Match[str]) -> str:
        said = m.group("word") or m.group("lead")
        in_first = m.group("digit") == "1" or (m.group("place") or "").lower() == "first"
        number = (first if in_first else second) + 1
        return f"{'C' if said[0].isupper() else 'c'}andidate {number}"

    return _RESPONSE_WORD.sub(named, reason)
