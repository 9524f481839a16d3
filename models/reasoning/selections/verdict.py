"""``verdict``: a fast pairwise choice, with no verdict written.

Each pair is asked as the judge asks it, and the answer is begun for the model: "I choose
response "; the probabilities of "1" and "2" as its next token decide. Every pair is asked in
both orders and the two are averaged, so a judge that prefers whichever response comes first
cancels out. One prompt evaluation per order, no generation; the same knockout as the judge
(:mod:`stagewise.models.reasoning.tournament`). A later round's prompt reads only its second
response and the end: it begins as the earlier prompt that showed its first response first.
"""

from __future__ import annotations

from collections.abc import Sequence

from stagewise.models.events import Verdict
from stagewise.models.reasoning import judge as judging
from stagewise.models.reasoning.search_backend import JudgeSession, Prompt
from stagewise.models.reasoning.search_sizes import (
    JUDGE_FIXED_TOKENS,
    JUDGE_PER_PAIR_TOKENS,
    SearchSizes,
    Segments,
)
from stagewise.models.reasoning.selections.base import Choosing, PairwiseSelection
from stagewise.models.reasoning.tournament import Referee

__all__ = ["VerdictSelection"]

CHOICES = ("1", "2")


class VerdictSelection(PairwiseSelection):
    name = "verdict"
    label = "The model picks from pairs (fast, both orders)"
    title = "verdict selection"
    help = ("the model's probability of naming each candidate of a pair, both orders "
            "averaged, in a knockout (no verdict written)")
    score_label = "rounds won, plus the probability of the last"

    def referee(self) -> Referee:
        return _Probabilities()

    def scores(self, verdicts: Sequence[Verdict], n: int) -> tuple[float, ...]:
        scores = [0.0] * n
        last: dict[int, float] = {}
        for v in verdicts:  # in round order: a candidate's last match comes last
            loser = v.second if v.winner == v.first else v.first
            scores[v.winner] += 1.0
            p = 1.0 if v.probability is None else v.probability
            last[v.winner], last[loser] = p, 1.0 - p
        return tuple(s + last.get(i, 0.0) for i, s in enumerate(scores))

    def context_cells(self, sizes: SearchSizes, segments: Segments) -> int:
        """A round's prompts at once, two a pair (N at most), forked from the image: the
        task, the question, the hint and two responses each."""
        one = JUDGE_FIXED_TOKENS + sizes.prompt + segments.hint + 2 * segments.response
        return sizes.beam * (one + JUDGE_PER_PAIR_TOKENS)

    def longest(self, sizes: SearchSizes, segments: Segments) -> int:
        return (JUDGE_FIXED_TOKENS + segments.hint + 2 * segments.response
                + JUDGE_PER_PAIR_TOKENS)

    def format_score(self, score: float) -> str:
        return f"{score:.2f}"


class _Probabilities:
    """A referee that reads the model's probability of naming each response."""

    def decide(self, session: JudgeSession, job: Choosing, round_no: int,
               pairs: Sequence[tuple[int, int]], prompts: Sequence[tuple[Prompt, Prompt]]
               ) -> list[Verdict]:
        asked = [p for pair in prompts for p in pair]
        # through the knockout's session: the next round reuses this round's prompts
        probabilities = session.choice_probabilities(asked, judging.CHOICE_PHRASE, CHOICES)
        verdicts = []
        for k, (first, second) in enumerate(pairs):
            shown, swapped = probabilities[2 * k], probabilities[2 * k + 1]
            p_first = (shown[0] + swapped[1]) / 2  # "1" as shown, "2" in the other order
            winner = first if p_first >= 0.5 else second
            p = p_first if winner == first else 1.0 - p_first
            reason = (f"candidate {winner + 1} is the better with probability {p:.2f} "
                      f"(as shown {shown[0]:.2f} for candidate {first + 1}, the other way "
                      f"{swapped[1]:.2f})")
            verdicts.append(Verdict(job.unit, job.segment, round_no, first, second, winner,
                                    reason, "", probability=p))
        return verdicts
