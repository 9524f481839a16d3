"""``judge``: the model judges pairs of its own candidates in a knockout, as the reference.

Each verdict is a free reply, sampled as the candidates are (the reference: temperature 0.6,
top-p 0.9), that ends once it names a response ("… I choose response 2."), within
``max_judge_tokens``. It is read as the reference reads it: response 1 when it says "I choose
response 1", else response 2; a reply that names neither is counted
(:attr:`~stagewise.models.events.Verdict.unread`). The wording is the short one or the
reference's (``judge_prompt``); see :mod:`stagewise.models.reasoning.judge`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from stagewise.models.events import Verdict
from stagewise.models.inference.sampling_settings import mix_seed
from stagewise.models.reasoning import judge as judging
from stagewise.models.reasoning.search_backend import JudgeSession, Prompt, ReplyRequest
from stagewise.models.reasoning.search_sizes import (
    CHECK_FIXED_TOKENS,
    JUDGE_FIXED_TOKENS,
    JUDGE_PER_PAIR_TOKENS,
    SearchSizes,
    Segments,
)
from stagewise.models.reasoning.selections.base import Choosing, PairwiseSelection
from stagewise.models.reasoning.tournament import Referee

__all__ = ["JudgeSelection"]

_REASON = re.compile(r"^\s*(?:Since\s+)?(?P<reason>.*?),?\s*I choose response [12]", re.DOTALL)


class JudgeSelection(PairwiseSelection):
    name = "judge"
    label = "The model judges pairs (written verdicts)"
    title = "judge selection"
    help = ("the model writes a verdict on each pair of candidates in a knockout, as the "
            "reference does (the dearest)")
    score_label = "verdicts won"

    def referee(self) -> Referee:
        return _WrittenVerdicts()

    def scores(self, verdicts: Sequence[Verdict], n: int) -> tuple[float, ...]:
        return tuple(float(sum(v.winner == i for v in verdicts)) for i in range(n))

    def context_cells(self, sizes: SearchSizes, segments: Segments) -> int:
        """The knockout's N − 1 judge prompts, which stay cached until the segment ends (the
        task, the question, the hint and, per pair, two responses and the verdict), or the
        reasoning checks (the question and caption once, then each reasoning), whichever is
        larger."""
        n = sizes.beam
        judges = (JUDGE_FIXED_TOKENS + sizes.prompt + segments.hint
                  + (n - 1) * (2 * segments.response + sizes.judge + JUDGE_PER_PAIR_TOKENS))
        checks = 0
        if segments.checked and sizes.check_reasoning:
            checks = CHECK_FIXED_TOKENS + sizes.prompt + sizes.stage + n * (sizes.stage + 8)
        return max(judges, checks)

    def longest(self, sizes: SearchSizes, segments: Segments) -> int:
        return (JUDGE_FIXED_TOKENS + segments.hint + 2 * segments.response + sizes.judge
                + JUDGE_PER_PAIR_TOKENS)

    def format_score(self, score: float) -> str:
        return f"{score:g}"


class _WrittenVerdicts:
    """A referee that asks the model to write each verdict."""

    def decide(self, session: JudgeSession, job: Choosing, round_no: int,
               pairs: Sequence[tuple[int, int]], prompts: Sequence[tuple[Prompt, Prompt]]
               ) -> list[Verdict]:
        s = job.settings
        request = ReplyRequest(s.max_judge_tokens, s.sampling,
                               mix_seed(s.seed, job.segment, round_no, 0x1D6E),
                               judging.choice_stop,
                               tuple(f"{judging.CHOICE_PHRASE}{d}" for d in "12"))
        replies = session.reply([shown for shown, _ in prompts], request)
        verdicts = []
        for (first, second), reply in zip(pairs, replies, strict=True):
            choice, named = judging.read_choice(reply)
            found = _REASON.match(reply)
            reason = found.group("reason").strip() if found else reply.strip()
            verdicts.append(Verdict(job.unit, job.segment, round_no, first, second,
                                    first if choice == 1 else second, reason, reply,
                                    unread=not named))
        return verdicts


