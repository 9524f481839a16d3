"""Follow-up questions: the earlier turns of a conversation about one image.

A follow-up is asked with the earlier questions about the same image, and their answers, in
the prompt, in the chat template's multi-turn form (the image in the first user turn). What
goes back in for an earlier answer is its **conclusion only**, not the whole four-stage
text:

* the conclusion is what the person read as the answer, and what a follow-up such as "why?"
  or "and the blue one?" refers to;
* the Summary, Caption and Reasoning are the model's working; the image is still in the
  prompt, so the new answer writes its own caption and reasoning from it, rather than from a
  copy of the earlier working (LLaVA-CoT was trained on single-turn answers whose stages
  describe the image afresh);
* four stages of up to ``max_stage_tokens`` each would fill the context in a few turns (1,024
  tokens a turn at the default budget), where conclusions take a few tokens to a sentence.

The turns are evaluated as text after the image the engine keeps, so a follow-up does not
encode the image again. When the thread would leave the answer too little room in the
context, the oldest turns are left out (:func:`answer_room`), and the run says how many.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from stagewise.models.events import SearchResult
from stagewise.models.reasoning.search_settings import SearchSettings

__all__ = ["Turn", "answer_room", "turns_of"]


class Turn(NamedTuple):
    """One earlier turn: the question as asked and the answer that goes back into the
    prompt (the conclusion)."""

    question: str
    answer: str


def turns_of(results: Iterable[SearchResult]) -> tuple[Turn, ...]:
    """The turns a follow-up to ``results`` (oldest first) has in its prompt: each one with
    a conclusion (a run stopped or failed before its conclusion is left out)."""
    return tuple(Turn(r.question.strip(), r.conclusion.strip()) for r in results
                 if r.conclusion.strip())


def answer_room(settings: SearchSettings) -> int:
    """Context cells the search needs after its prompt: the chosen answer, the candidates
    and the selection's prompts (:func:`stagewise.models.reasoning.strategies.context_need`
    without the prompt and the image, which the prompt's own count covers)."""
    from stagewise.models.reasoning.strategies import context_need

    return context_need(settings, prompt_tokens=0, image_tokens=0)
