"""``stage``: stage-level beam search, the paper's method (beam 1 is a plain single pass).

The four stages are written one after the other; for each, N candidates are sampled
continuing the chosen text, one is chosen, and the next stage continues from it.
"""

from __future__ import annotations

from collections.abc import Iterator

from stagewise.models.events import Event
from stagewise.models.reasoning.search_sizes import SearchSizes, Segments
from stagewise.models.reasoning.search_steps import SearchSteps
from stagewise.models.reasoning.segments import stage_segment
from stagewise.models.reasoning.strategies.base import Strategy
from stagewise.models.stages import STAGES

__all__ = ["StageStrategy"]


class StageStrategy(Strategy):
    name = "stage"
    label = "Stage by stage (recommended)"
    title = "stage-level beam search"
    help = "N candidates for each stage, the best kept before the next (the paper's)"

    def segments(self, sizes: SearchSizes) -> Segments:
        # a candidate is one stage; the hint is at most the caption and the reasoning
        return Segments(response=sizes.stage, hint=2 * sizes.stage, checked=True)

    def run(self, steps: SearchSteps) -> Iterator[Event]:
        for stage in STAGES:
            seg = stage_segment(stage, steps.settings, steps.mode, steps.run.answer)
            yield from steps.run_segment(seg)
