"""A second model's copy of the question's image: encoded once, forked for every prompt.

Both verifiers that run on a second GGUF vision model (:mod:`~stagewise.models.reasoning.
model_verifier`, :mod:`~stagewise.models.reasoning.prm_verifier`) ask many prompts that
differ only after the image. :class:`VerifierImage` evaluates the prompt up to the image's
end into sequence 0 once per question; each prompt then copies those cells into sequence 1
and evaluates only its own text after the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from stagewise.models.errors import StagewiseError
from stagewise.models.inference.mtmd_prompt import Bitmap

if TYPE_CHECKING:
    from stagewise.models.inference.engine import Engine
    from stagewise.models.inference.images import PreparedImage

__all__ = ["VerifierImage"]

FORK = 1
"""The sequence each prompt is evaluated in, forked from the image in sequence 0."""


class VerifierImage:
    """The question's image in a verifier's engine; ``who`` names the model in errors
    ("the scorer", "the PRM")."""

    def __init__(self, engine: Engine, who: str) -> None:
        self.engine = engine
        self.who = who
        self._bitmap: Bitmap | None = None
        self._before = ""
        self._image_end: list[int] = []
        self.shared = 0
        """Positions of sequence 0 every prompt shares: up to the image's end."""

    def encode(self, image: PreparedImage, text: str, plain: Sequence[str]) -> None:
        """Evaluate ``text`` (a rendered prompt holding the image) up to the image's end
        into sequence 0, after clearing the engine.

        Raises:
            StagewiseError: The model's chat template puts no image in its prompt.
        """
        self.close()
        engine = self.engine
        engine.clear()
        self._bitmap = Bitmap(engine.fit_image(image))
        self._before = text.partition(engine.media_marker)[0]
        prompt = engine.tokenize_prompt(text, self._bitmap, plain)
        try:
            if not any(c.is_image for c in prompt.chunks):
                raise StagewiseError(f"{self.who}'s chat template puts no image in its prompt")
            self.shared = prompt.shared_pos
            self._image_end = prompt.image_end
            engine.eval_prompt(prompt, 0)
        finally:
            prompt.close()

    def after_image(self, text: str, plain: Sequence[str]) -> list[int]:
        """The tokens of a rendered prompt after the shared cells (the image's end, then
        the text after the image), ``plain`` texts tokenized as written.

        Raises:
            StagewiseError: The prompt's text before the image is not the encoded one's.
        """
        before, _, after = text.partition(self.engine.media_marker)
        if before != self._before:
            raise StagewiseError(f"{self.who}'s template changes the text before the image")
        return self._image_end + self.engine.tokenize_plain(after, plain)

    def fork(self) -> None:
        """Sequence :data:`FORK` as the shared cells alone, ready for a prompt's text."""
        self.engine.remove_seq(FORK)
        self.engine.copy_seq(0, FORK, 0, self.shared)

    def drop_fork(self) -> None:
        self.engine.remove_seq(FORK)

    def close(self) -> None:
        """Free the image's bitmap; safe to repeat."""
        if self._bitmap is not None:
            self._bitmap.close()
            self._bitmap = None
