"""``selfcheck``: the model's own probability that a candidate is correct.

Each candidate is asked about, with the image the search already holds: "Is this response
correct? Answer Yes or No.", and scored by P("Yes") against P("No") as the answer's first
token; one forward pass per candidate, no generation.
"""

from __future__ import annotations

from collections.abc import Sequence

from stagewise.models.events import Candidate
from stagewise.models.reasoning import judge as judging
from stagewise.models.reasoning.search_backend import Prompt
from stagewise.models.reasoning.search_sizes import JUDGE_FIXED_TOKENS, SearchSizes, Segments
from stagewise.models.reasoning.selections.base import Choosing, PointwiseSelection
from stagewise.models.reasoning.tournament import response_text
from stagewise.models.stages import Stage, parse_answer

__all__ = ["SelfcheckSelection", "scoring_text"]

_ASK = {
    Stage.SUMMARY: "Does this response outline how to approach the question correctly?",
    Stage.CAPTION: "Does this response describe the parts of the image that matter for the "
                   "question correctly?",
    Stage.REASONING: "Is this reasoning, including any arithmetic, correct for the image and "
                     "the question?",
    Stage.CONCLUSION: "Is this the correct answer to the question?",
}
_ASK_WHOLE = "Is this response a correct answer to the question, with a correct description " \
             "of the image and correct reasoning?"


def scoring_text(stage: Stage | None, question: str, so_far: str, response: str) -> str:
    """The user turn that asks about one candidate (the image goes before it).

    A reasoning is asked about as stage-level search's reasoning check asks (the chosen
    caption as the description), which a LLaVA-CoT model may have been trained on.
    """
    if stage is Stage.REASONING:
        caption = parse_answer(so_far).stages.get(Stage.CAPTION, "")
        return judging.check_text(question, caption, response)
    parts = [f"Question: {question.strip()}"]
    if so_far.strip():
        parts.append(f"Answer so far: {so_far.strip()}")
    ask = _ASK[stage] if stage is not None else _ASK_WHOLE
    parts += [f"Response: {response.strip()}", f"{ask} Answer Yes or No."]
    return "\n\n".join(parts)


class SelfcheckSelection(PointwiseSelection):
    name = "selfcheck"
    label = "The model checks each candidate"
    title = "self-check selection"
    help = "the model's own P(Yes) that each candidate is correct (one pass per candidate)"
    score_label = "P(correct), by the model itself"

    def score(self, job: Choosing, candidates: Sequence[Candidate]) -> list[float]:
        responses = [response_text(job.unit, job.answer, c) for c in candidates]
        so_far = job.so_far
        return job.backend.yes_probability([
            Prompt(scoring_text(job.unit, job.question, so_far, response),
                   (job.question, so_far, response)) for response in responses])

    def context_cells(self, sizes: SearchSizes, segments: Segments) -> int:
        # each candidate's prompt, forked from the image: the task, the question, the
        # answer so far (at most three stages) and the candidate
        return sizes.beam * (sizes.prompt + self.longest(sizes, segments))

    def longest(self, sizes: SearchSizes, segments: Segments) -> int:
        return JUDGE_FIXED_TOKENS + 3 * sizes.stage + segments.response

    def format_score(self, score: float) -> str:
        return f"{score:.2f}"
