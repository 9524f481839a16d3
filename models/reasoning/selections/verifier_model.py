"""``model``: a second GGUF vision model scores each candidate (P("Yes") to "Is this correct?").

The second model is loaded once by the session (:meth:`stagewise.models.session.Session.
verifier`) and encodes each question's image once in its own context
(:mod:`stagewise.models.reasoning.model_verifier`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from stagewise.models.errors import StagewiseError
from stagewise.models.events import Candidate
from stagewise.models.reasoning.selections.base import Choosing, PointwiseSelection, Verifier
from stagewise.models.reasoning.tournament import response_text

if TYPE_CHECKING:
    from stagewise.models.inference.engine import Engine

__all__ = ["ModelSelection"]


class ModelSelection(PointwiseSelection):
    name = "model"
    label = "A second model checks each candidate"
    title = "second-model selection"
    help = "a second GGUF vision model's P(Yes) that each candidate is correct (--scorer-model)"
    score_label = "P(correct), by the second model"
    needs_verifier = True

    def verifier_for(self, engine: Engine) -> Verifier:
        from stagewise.models.reasoning.model_verifier import ModelVerifier

        return ModelVerifier(engine)

    def score(self, job: Choosing, candidates: Sequence[Candidate]) -> list[float]:
        if job.verifier is None:
            raise StagewiseError("the model selection needs a second model (--scorer-model)")
        responses = [response_text(job.unit, job.answer, c) for c in candidates]
        return job.verifier.score(job.unit, job.so_far, responses)

    def format_score(self, score: float) -> str:
        return f"{score:.2f}"
