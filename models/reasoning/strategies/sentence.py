"""``sentence``: the paper's sentence-level beam search, one sentence at a time."""

from __future__ import annotations

from collections.abc import Iterator

from stagewise.models.events import Event
from stagewise.models.reasoning.search_sizes import SearchSizes, Segments
from stagewise.models.reasoning.search_steps import SearchSteps
from stagewise.models.reasoning.segments import sentence_segments
from stagewise.models.reasoning.strategies.base import Strategy

__all__ = ["SentenceStrategy"]


class SentenceStrategy(Strategy):
    name = "sentence"
    label = "Sentence by sentence"
    title = "sentence-level beam search"
    help = "N candidates for each next sentence of the whole answer (the paper's baseline)"
    whole_answer = True
    segment_word = "Sentence"

    def segments(self, sizes: SearchSizes) -> Segments:
        # a sentence may run the whole answer's budget; the hint is the answer so far
        return Segments(response=4 * sizes.stage, hint=4 * sizes.stage)

    def run(self, steps: SearchSteps) -> Iterator[Event]:
        for seg in sentence_segments(steps.settings, steps.mode, steps.run.chosen_so_far):
            yield from steps.run_segment(seg)
