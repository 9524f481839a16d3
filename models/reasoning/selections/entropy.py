"""``entropy``: the candidate the model was surest of, by the entropy of its distributions.

Free: while a candidate is sampled, the entropy of the model's distribution at each of its
tokens is computed from the same logits the sampler starts from (temperature 1); the
candidate with the lowest mean entropy wins (arXiv 2605.30713 finds it beats majority voting).
Its score is the negated mean entropy, so higher is better, as for every selection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from stagewise.models.events import Candidate
from stagewise.models.reasoning.search_backend import SearchBackend
from stagewise.models.reasoning.selections.base import Choosing, PointwiseSelection

__all__ = ["EntropySelection"]


class EntropySelection(PointwiseSelection):
    name = "entropy"
    label = "Lowest mean entropy (the surest)"
    title = "entropy selection"
    help = "the candidate with the lowest mean token entropy (free)"
    score_label = "negated mean entropy"
    reads_sampling = True
    default_cutoff = -math.inf  # not a probability: retrace never goes back by default

    def unavailable(self, backend: SearchBackend) -> str | None:
        if backend.measures_entropy:
            return None
        return "the server returns a few log-probabilities per token, not the whole distribution"

    def score(self, job: Choosing, candidates: Sequence[Candidate]) -> list[float]:
        return [-c.mean_entropy if c.mean_entropy is not None else -math.inf
                for c in candidates]

    def format_score(self, score: float) -> str:
        return f"{score:.2f}" if math.isfinite(score) else "n/a"
