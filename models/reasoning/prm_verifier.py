"""A process reward model (PRM) that scores each stage as a step of a solution.

The open vision PRMs that llama.cpp can run (VL-PRM, arXiv 2509.23250, on Qwen2.5-VL; and
VisualPRM-8B-v1.1, arXiv 2503.10291, where its language model is Qwen2) read a solution as a
multi-turn chat, one step a turn, and answer each with "+" (correct up to this step) or "-":

* a system message (VL-PRM's, :data:`VL_PRM_SYSTEM`, unless the GGUF names its own under
  :data:`SYSTEM_KEY`);
* the first user turn: the image, then ``### Question:\\n{question}\\n\\n### Solution
  Process:\\n{first step}``; each later user turn is the next step; every earlier assistant
  turn is "+";
* the score of the newest step is P("+") against P("-") as the first token of the assistant's
  reply.

A stage candidate is scored as the newest step after the stages chosen before it (the PRM
judges correctness *up to* a step); a whole answer (or a sentence's answer so far) is scored
as the mean of its stages' scores, as VisualPRM scores a response. Stage tags are left out of
the steps. The image is encoded once per question, into sequence 0; each candidate forks it
and evaluates its own turns, reading the logits after each assistant header.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from stagewise.models.errors import StagewiseError
from stagewise.models.inference.chat_template import ChatTemplateError
from stagewise.models.reasoning.llama_judging import yes_share
from stagewise.models.reasoning.verifier_image import FORK, VerifierImage
from stagewise.models.stages import STAGES, Stage, parse_answer

if TYPE_CHECKING:
    from stagewise.models.inference.engine import Engine
    from stagewise.models.inference.images import PreparedImage

__all__ = ["SYSTEM_KEY", "VL_PRM_SYSTEM", "PrmVerifier", "prm_steps", "step_turns"]

SYSTEM_KEY = "stagewise.prm.system_prompt"
"""GGUF metadata key of a PRM's own system message (VisualPRM's differs from VL-PRM's)."""

VL_PRM_SYSTEM = (
    "**You are a process supervision model for visual reasoning tasks. You will receive an "
    "image and an image-based problem statement, followed by solution steps to evaluate.**\n\n"
    "First round: problem statement and first solution step.  \n"
    "Subsequent rounds: one new step per round.\n\n"
    "Assess the cumulative correctness of the entire solution up to each step.\n\n"
    "## Evaluation Criteria:\n\n"
    "1. **Visual Accuracy**: Are visual elements from the image correctly identified (shapes, "
    "colors, positions, quantities, spatial relationships)?\n\n"
    "2. **Logical Validity**: Do all inferences and calculations follow correctly from the "
    "image and previous steps?\n\n"
    "## Response:\n"
    "- **\"+\"** if correct up to this step\n"
    "- **\"-\"** if any error exists up to this step\n\n"
    "Only respond with \"+\" or \"-\". No explanations.\n\n"
    "An error in any step invalidates all subsequent steps.")
"""VL-PRM's system message, as its training and evaluation code word it
(theogbrand/vlprm, ``PRM_SYSTEM_PROMPT_NORMAL_TOK_V2``)."""

GOOD, BAD = "+", "-"


def prm_steps(stage: Stage | None, so_far: str, response: str) -> tuple[list[str], bool]:
    """The steps a candidate is scored as, and whether only the last one counts.

    A stage candidate (``stage`` set): the stages ``so_far`` closed before it, then the
    candidate (the newest step counts). A whole answer or a sentence (``stage`` None): the
    stages of ``so_far`` followed by ``response`` (every step counts, averaged).
    """
    if stage is not None:
        earlier = parse_answer(so_far).stages
        steps = [earlier[s] for s in STAGES[:STAGES.index(stage)] if earlier.get(s)]
        return [*steps, response.strip()], True
    parsed = parse_answer(so_far + response).stages
    steps = [parsed[s] for s in STAGES if parsed.get(s)]
    return steps or [response.strip()], False


def step_turns(question: str, steps: Sequence[str]) -> list[tuple[str, str]]:
    """The user turns of a solution, each answered "+", but for the newest (last) whose
    answer is what the PRM is asked for (its text in the last pair is "")."""
    users = [f"### Question:\n{question.strip()}\n\n### Solution Process:\n{steps[0]}",
             *steps[1:]]
    return [(user, GOOD) for user in users[:-1]] + [(users[-1], "")]


class PrmVerifier:
    """Scores candidates with a PRM (a :class:`~stagewise.models.reasoning.selections.
    Verifier`); the engine is the caller's to close.

    Raises:
        StagewiseError: The model's vocabulary has no single token for "+" or "-".
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.good, self.bad = _single_token(engine, GOOD), _single_token(engine, BAD)
        self.system = engine.meta(SYSTEM_KEY) or VL_PRM_SYSTEM
        self._question = ""
        self._image = VerifierImage(engine, "the PRM")

    def start(self, image: PreparedImage, question: str) -> None:
        """Encode the question's image once (into sequence 0).

        Raises:
            StagewiseError: The PRM's chat template puts no image in its prompt.
        """
        self._question = question
        self._image.encode(image, self._render([("x", "")]), (question,))

    def score(self, stage: Stage | None, so_far: str, responses: Sequence[str]) -> list[float]:
        """Each response's score: P("+") of its newest step, or the mean over its steps."""
        return [self._score(*prm_steps(stage, so_far, response)) for response in responses]

    def _score(self, steps: list[str], last_only: bool) -> float:
        """Evaluate the solution from the cached image, reading P("+") after the assistant
        header of each step that counts."""
        engine, shown = self.engine, self._image
        turns = step_turns(self._question, steps)
        counted = [len(turns) - 1] if last_only else range(len(turns))
        texts = [self._render(turns[: k + 1]) for k in counted]
        plain = (self._question, *steps)
        shown.fork()
        pos, scores, done = shown.shared, [], ""
        for text in texts:
            if not done:
                tokens = shown.after_image(text, plain)
            elif text.startswith(done):
                tokens = engine.tokenize_plain(text[len(done):], plain)
            else:
                raise StagewiseError("the PRM's chat template changes earlier turns as the "
                                     "conversation grows")
            index = engine.eval_tokens([(FORK, pos, tokens)])
            pos += len(tokens)
            scores.append(yes_share(engine.logits(index[FORK]), self.good, self.bad))
            done = text
        shown.drop_fork()
        return scores[-1] if last_only else sum(scores) / len(scores)

    def _render(self, turns: Sequence[tuple[str, str]]) -> str:
        """The conversation up to the newest user turn, ending where the PRM answers."""
        earlier = [(user, GOOD) for user, _ in turns[:-1]]
        try:
            return self.engine.chat_prompt(turns[-1][0], earlier=earlier, system=self.system)
        except ChatTemplateError:  # a template without a system role: it leads the turn
            first, *rest = [*earlier, (turns[-1][0], "")]
            merged = [(f"{self.system}\n\n{first[0]}", first[1]), *rest]
            return self.engine.chat_prompt(merged[-1][0], earlier=merged[:-1])

    def finish(self) -> None:
        self._image.close()


def _single_token(engine: Engine, text: str) -> int:
    tokens = engine.tokenize(text, special=False)
    if len(tokens) != 1:
        raise StagewiseError(f"{engine.name} has no single token for {text!r}, which a "
                             "process reward model answers with: it is not a PRM")
    return tokens[0]
