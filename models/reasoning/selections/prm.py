"""``prm``: a process reward model scores each candidate as the next step of the solution.

A second GGUF vision model in the format of the open vision PRMs (a multi-turn chat, one step
a turn, answered "+" or "-"; :mod:`stagewise.models.reasoning.prm_verifier`), loaded once by
the session through its own load plan (fit check included), its image encoded once per
question. A stage's score is the PRM's P("+") for that stage after the stages chosen before
it; a whole answer's is the mean over its stages (VisualPRM's "average").
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

__all__ = ["PrmSelection"]


class PrmSelection(PointwiseSelection):
    name = "prm"
    label = "A process reward model scores each step"
    title = "process-reward-model selection"
    help = ("a process reward model (a second GGUF, --scorer-model) scores each candidate as "
            "the next step, P('+')")
    score_label = "P(correct step), by the reward model"
    needs_verifier = True

    def verifier_for(self, engine: Engine) -> Verifier:
        from stagewise.models.reasoning.prm_verifier import PrmVerifier

        return PrmVerifier(engine)

    def score(self, job: Choosing, candidates: Sequence[Candidate]) -> list[float]:
        if job.verifier is None:
            raise StagewiseError("the prm selection needs a reward model (--scorer-model)")
        if job.unit is not None:
            responses = [response_text(job.unit, job.answer, c) for c in candidates]
        else:  # the whole text after the chosen one: the open tag the search wrote, and more
            written = job.answer[len(job.so_far):]
            responses = [written + c.text for c in candidates]
        return job.verifier.score(job.unit, job.so_far, responses)

    def format_score(self, score: float) -> str:
        return f"{score:.2f}"
