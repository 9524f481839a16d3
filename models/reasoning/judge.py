"""What the model is asked when it judges its own candidates (after the LLaVA-CoT paper).

The judge sees the image, the question, an optional hint and two responses, and answers
"Since <reason>, I choose response <1|2>." under a grammar, so the verdict can always be
read. Before reasoning candidates meet, a text-only check asks whether each one's
reasoning is correct assuming the caption is true; a candidate judged wrong loses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stagewise.models.reasoning.stages import Stage

VERDICT_GRAMMAR = r'''root ::= "Since " reason ", I choose response " choice "."
reason ::= [^,\n]+
choice ::= "1" | "2"
'''
FORCED_SUFFIX = ", I choose response "
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
_VERDICT_RE = re.compile(r"^Since (?P<reason>.*?), I choose response (?P<choice>[12])\.?\s*$",
                         re.DOTALL)


@dataclass(frozen=True)
class ParsedVerdict:
    choice: int | None  # 1 or 2; None while incomplete
    reason: str


def judge_text(stage: Stage | None, question: str, first: str, second: str,
               hint: str = "", *, sentence: bool = False) -> str:
    """The user turn of a pairwise judgement (the image goes before it).

    The task comes first and the two responses last, so that the judgements of one
    question share everything up to "Response 1" in the cache. With ``sentence``, the
    paper's sentence-level question: which response is the better next sentence.
    """
    ask = _ASK_SENTENCE if sentence else _ASK[stage] if stage else _ASK_WHOLE
    parts = [
        f"{ask} Answer in the form \"Since <reason>, I choose response <1 or 2>.\"",
        f"Question: {question.strip()}",
    ]
    if hint:
        parts.append(f"Hint: {hint.strip()}")
    parts += [f"Response 1: {first.strip()}", f"Response 2: {second.strip()}"]
    return "\n\n".join(parts)


def check_text(question: str, caption: str, reasoning: str) -> str:
    """The text-only correctness check for one reasoning candidate."""
    return (
        f"Question: {question.strip()}\n\n"
        f"Description of the image (assume it is true): {caption.strip()}\n\n"
        f"Reasoning: {reasoning.strip()}\n\n"
        "Assuming the description is true, is this reasoning, including any arithmetic, "
        "correct? Answer Yes or No."
    )


def parse_verdict(text: str) -> ParsedVerdict:
    """Read a (possibly incomplete) verdict; never raises."""
    m = _VERDICT_RE.match(text.strip())
    if not m:
        reason = text.strip()
        reason = reason[len("Since "):] if reason.startswith("Since ") else reason
        return ParsedVerdict(None, reason.split(FORCED_SUFFIX)[0].strip())
    return ParsedVerdict(int(m.group("choice")), m.group("reason").strip())


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
