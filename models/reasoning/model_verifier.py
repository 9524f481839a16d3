"""A second GGUF vision model that scores candidates: its P("Yes") to "Is this correct?".

It runs on its own :class:`~stagewise.models.inference.engine.Engine` (loaded by the session
through a load plan, with its own fit check) and encodes each question's image once, into
sequence 0; each candidate's prompt forks that and evaluates only its own text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from stagewise.models.errors import StagewiseError
from stagewise.models.inference.families import fit_pixels
from stagewise.models.inference.mtmd_prompt import Bitmap
from stagewise.models.reasoning.llama_judging import yes_no_tokens, yes_share
from stagewise.models.reasoning.selections.selfcheck import scoring_text
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
        self._bitmap: Bitmap | None = None
        self._image_end: list[int] = []
        self._shared = 0
        self._before = ""

    def start(self, image: PreparedImage, question: str) -> None:
        """Encode the question's image once (into sequence 0).

        Raises:
            StagewiseError: The model's chat template puts no image in its prompt.
        """
        self.finish()
        engine = self.engine
        engine.clear()
        self._question = question
        self._bitmap = Bitmap(fit_pixels(image, engine.max_image_pixels))
        text = engine.chat_prompt(scoring_text(Stage.CAPTION, question, "", "x"))
        self._before = text.partition(engine.media_marker)[0]
        prompt = engine.tokenize_prompt(text, self._bitmap, (question,))
        try:
            self._shared = prompt.shared_pos
            self._image_end = prompt.image_end
            if not any(c.is_image for c in prompt.chunks):
                raise StagewiseError("the scorer's chat template puts no image in its prompt")
            engine.eval_prompt(prompt, 0)
        finally:
            prompt.close()

    def score(self, stage: Stage | None, so_far: str, responses: Sequence[str]) -> list[float]:
        """P("Yes") for each response, asked with the image."""
        engine = self.engine
        scores = []
        for response in responses:
            text = engine.chat_prompt(scoring_text(stage, self._question, so_far, response))
            before, _, after = text.partition(engine.media_marker)
            if before != self._before:
                raise StagewiseError("the scorer's template changes the text before the image")
            tail = self._image_end + engine.tokenize_plain(after, (self._question, so_far,
                                                                   response))
            engine.remove_seq(1)
            engine.copy_seq(0, 1, 0, self._shared)
            index = engine.eval_tokens([(1, self._shared, tail)])
            scores.append(yes_share(engine.logits(index[1]), self._yes, self._no))
        engine.remove_seq(1)
        return scores

    def finish(self) -> None:
        if self._bitmap is not None:
            self._bitmap.close()
            self._bitmap = None
