"""The sizes a search's context need is computed from; shared by strategies and selections.

A strategy says how many context cells its answer and candidates take; a selection adds what
its own prompts hold while it chooses. :func:`stagewise.models.hardware.need.estimate_need`
adds them up for the hardware fit, and a follow-up leaves that much room after its prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CHECK_FIXED_TOKENS", "DEFAULT_PROMPT_TOKENS", "JUDGE_FIXED_TOKENS",
           "JUDGE_PER_PAIR_TOKENS", "SearchSizes", "Segments"]

DEFAULT_PROMPT_TOKENS = 256
"""Tokens of the chat template, the instruction and a question, when not given."""
JUDGE_FIXED_TOKENS = 128
"""A scoring prompt's fixed text (task sentence, answer form, labels, chat template), in
tokens (measured on the judge's prompts, with room to spare)."""
CHECK_FIXED_TOKENS = 96
"""The text-only reasoning check's fixed text, in tokens."""
JUDGE_PER_PAIR_TOKENS = 16
"""Labels and separators around each response in a pairwise prompt."""


@dataclass(frozen=True)
class SearchSizes:
    """One question's sizes, in tokens.

    Attributes:
        prompt: The prompt without the image (template and question), P.
        image: The image's embeddings, I.
        stage: The budget of one stage of one candidate, S.
        judge: The budget of a judge's written reply, J.
        beam: Candidates per segment, N.
        check_reasoning: Whether the text-only reasoning check runs before pairwise judging.
    """

    prompt: int
    image: int
    stage: int
    judge: int
    beam: int
    check_reasoning: bool = True


@dataclass(frozen=True)
class Segments:
    """What a strategy's segments look like to a selection sizing its prompts.

    Attributes:
        response: Tokens of one candidate as a selection reads it (S for a stage, 4·S for a
            whole answer or a sentence that may run the whole budget).
        hint: Tokens of the chosen text a pairwise prompt quotes as its hint.
        checked: Whether reasoning candidates get the text-only correctness check.
    """

    response: int
    hint: int
    checked: bool = False
