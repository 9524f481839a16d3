"""``logprob``: the candidate whose tokens the model found likeliest, on average.

Free: the mean log-probability of each candidate's sampled tokens (under the model's own
distribution, temperature 1) is kept while it is sampled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from stagewise.models.events import Candidate
from stagewise.models.reasoning.selections.base import Choosing, PointwiseSelection

__all__ = ["LogprobSelection"]


class LogprobSelection(PointwiseSelection):
    name = "logprob"
    label = "Highest mean log-probability"
    title = "log-probability selection"
    help = "the candidate with the highest mean token log-probability (free)"
    score_label = "mean log-probability"
    reads_sampling = True
    default_cutoff = -math.inf  # its scores are not probabilities: retrace never goes back

    def score(self, job: Choosing, candidates: Sequence[Candidate]) -> list[float]:
        return [c.mean_logprob for c in candidates]

    def format_score(self, score: float) -> str:
        return f"{score:.2f}" if math.isfinite(score) else "n/a"
