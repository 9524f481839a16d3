"""``best-of-n``: N whole answers, the best one kept (the paper's baseline)."""

from __future__ import annotations

from collections.abc import Iterator

from stagewise.models.events import Event
from stagewise.models.reasoning.search_sizes import SearchSizes, Segments
from stagewise.models.reasoning.search_steps import SearchSteps
from stagewise.models.reasoning.segments import whole_answer_segment
from stagewise.models.reasoning.strategies.base import Strategy

__all__ = ["BestOfNStrategy"]


class BestOfNStrategy(Strategy):
    name = "best-of-n"
    label = "Best of N whole answers"
    title = "best-of-N"
    help = "N whole answers, the best one kept (the paper's baseline)"
    whole_answer = True
    segment_word = "Answer"

    def segments(self, sizes: SearchSizes) -> Segments:
        return Segments(response=4 * sizes.stage, hint=0)

    def run(self, steps: SearchSteps) -> Iterator[Event]:
        yield from steps.run_segment(whole_answer_segment(steps.settings, steps.mode))
