"""A second GGUF vision model that scores candidates: its P("Yes") to "Is this correct?".

It runs on its own :class:`~stagewise.models.inference.engine.Engine` (loaded by the session
through a load plan, with its own fit check) and encodes each question's image once, into
sequence 0; each candidate's prompt forks that and evaluates only its own text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from stagewise.models.reasoning.llama_judging import yes_no_tokens, yes_share
from stagewise.models.reasoning.selections.selfcheck import scoring_text
from stagewise.models.reasoning.verifier_image import FORK, VerifierImage
from stagewise.models.stages import Stage

if TYPE_CHECKING:
    from stagewise.models.inference.engine import Engine
    from stagewise.models.inference.images import PreparedImage

__all__ = ["ModelVerifier"]


class ModelVerifier:
    """Scores candidates with a second model (a :class:`~stagewise.models.reasoning.
    selections.Verifier`); the engine is the caller's to close."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._yes, self._no = yes_no_tokens(engine)
        self._question = ""
        self._image = VerifierImage(engine, "the scorer")

    def start(self, image: PreparedImage, question: str) -> None:
        """Encode the question's image once (into sequence 0).

        Raises:
            StagewiseError: The model's chat template puts no image in its prompt.
        """
        self._question = question
        text = self.engine.chat_prompt(scoring_text(Stage.CAPTION, question, "", "x"))
        self._image.encode(image, text, (question,))

    def score(self, stage: Stage | None, so_far: str, responses: Sequence[str]) -> list[float]:
        """P("Yes") for each response, asked with the image."""
        engine, shown = self.engine, self._image
        scores = []
        for response in responses:
            text = engine.chat_prompt(scoring_text(stage, self._question, so_far, response))
            tail = shown.after_image(text, (self._question, so_far, response))
            shown.fork()
            index = engine.eval_tokens([(FORK, shown.shared, tail)])
            scores.append(yes_share(engine.logits(index[FORK]), self._yes, self._no))
        shown.drop_fork()
        return scores

    def finish(self) -> None:
        self._image.close()
