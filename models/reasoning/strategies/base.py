"""What a strategy is: what a search generates, segment by segment, and what it needs.

A strategy is one object in :data:`stagewise.models.reasoning.strategies.STRATEGIES`. It
writes an answer from the steps a run offers (:class:`~stagewise.models.reasoning.search_steps.
SearchSteps`: sample candidates of a segment, choose one through the run's selection, keep
it), and says how many sequences and how much context it needs, how it is named, and what
the views show of it. Every front end reads these from the registry, so adding a strategy is
adding its module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, ClassVar

from stagewise.models.errors import StagewiseError
from stagewise.models.events import Event
from stagewise.models.reasoning.search_sizes import SearchSizes, Segments

if TYPE_CHECKING:
    from stagewise.models.reasoning.search_settings import SearchSettings
    from stagewise.models.reasoning.search_steps import SearchSteps
    from stagewise.models.reasoning.selections import Selection

__all__ = ["Strategy"]


class Strategy(ABC):
    """How a search writes an answer.

    Attributes:
        name: The name settings, the CLI and saved runs use.
        label: What Preferences shows.
        title: How exports and tables name it ("stage-level beam search").
        help: One line for ``--strategy``'s help.
        uses_beam: The beam width applies (retrace has the paper's fixed sizes).
        whole_answer: Its candidates are whole answers or sentences spanning stages, so the
            views show each candidate under every stage.
        segment_word: What the candidates view calls one set of candidates ("Sentence").
        keeps_best: A stage shows its best-scored candidate so far (retrace), not the one
            the last segment chose.
        final_only: The terminal prints the answer once it is chosen, not as it streams.
        pointwise_only: Only selections that score each candidate on its own can choose.
        default_select: The selection it uses when none is asked for (None: the search's
            default).
    """

    name: ClassVar[str]
    label: ClassVar[str]
    title: ClassVar[str]
    help: ClassVar[str]
    uses_beam: ClassVar[bool] = True
    whole_answer: ClassVar[bool] = False
    segment_word: ClassVar[str] = "Segment"
    keeps_best: ClassVar[bool] = False
    final_only: ClassVar[bool] = False
    pointwise_only: ClassVar[bool] = False
    default_select: ClassVar[str | None] = None

    def sequences(self, beam: int) -> int:
        """Sequences it keeps alive at most: the chosen text, N candidates, and a fork for
        each of the N prompts a selection may ask at once."""
        return 2 * beam + 1

    @abstractmethod
    def segments(self, sizes: SearchSizes) -> Segments:
        """What its candidates look like to a selection sizing its prompts."""

    def context_cells(self, sizes: SearchSizes, selection: Selection) -> int:
        """Cells of the context one question fills at its peak.

        With P = prompt, I = image, S = stage budget, N = beam::

            P + I + N·4·S + (the selection's prompts, when N > 1)

        The prompt and image are evaluated once and shared by every sequence (a fork shares
        its cells), but each candidate's cells are its own; N·4·S bounds the answer kept in
        the chosen text plus N candidates (best-of-N: N whole answers of 4·S; stage-level:
        3·S chosen + N·S).
        """
        extra = selection.context_cells(sizes, self.segments(sizes)) if sizes.beam > 1 else 0
        return sizes.prompt + sizes.image + sizes.beam * 4 * sizes.stage + extra

    def longest(self, sizes: SearchSizes, selection: Selection) -> int:
        """Positions its longest sequence takes: an answer (the prompt, the image and four
        stages), or a selection's prompt forked from the image."""
        answer = sizes.prompt + sizes.image + 4 * sizes.stage
        if sizes.beam < 2:
            return answer
        prompt = selection.longest(sizes, self.segments(sizes))
        return max(answer, sizes.prompt + sizes.image + prompt if prompt else 0)

    def check(self, settings: SearchSettings, selection: Selection) -> None:
        """Refuse settings it cannot run with.

        Raises:
            StagewiseError: The selection cannot choose for it.
        """
        if self.pointwise_only and selection.pairwise:
            raise StagewiseError(
                f"{self.title} needs a selection that scores each candidate on its own, "
                f"not {selection.name!r}")

    @abstractmethod
    def run(self, steps: SearchSteps) -> Iterator[Event]:
        """Write the answer from the question's evaluated prompt, yielding events."""
