"""What a selection is: how one candidate of a segment is chosen, and what it scores.

A selection is one object in :data:`stagewise.models.reasoning.selections.SELECTIONS`. Every
strategy chooses through it (:meth:`Selection.choose`), and every front end reads its name,
label and the meaning of its scores from it, so adding a selection is adding its module.

Two kinds:

* **pointwise** (:class:`PointwiseSelection`): each candidate gets a score on its own (its mean
  log-probability, the model's P("Yes") that it is correct, a verifier's score); the best
  score wins. Scores of different segments compare, so retrace can use them for its cutoff.
* **pairwise** (``pairwise = True``): candidates meet in pairs and a verdict decides each pair
  (:mod:`stagewise.models.reasoning.tournament`); the views show the verdicts.

Scores are higher-is-better; each candidate of a chosen segment carries its own
(:attr:`stagewise.models.events.Candidate.score`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from stagewise.models.events import Candidate, Event
from stagewise.models.reasoning.search_sizes import SearchSizes, Segments
from stagewise.models.stages import Stage

if TYPE_CHECKING:
    from stagewise.models.events import Verdict
    from stagewise.models.inference.engine import Engine
    from stagewise.models.inference.images import PreparedImage
    from stagewise.models.reasoning.search_backend import SearchBackend
    from stagewise.models.reasoning.search_settings import SearchSettings
    from stagewise.models.reasoning.tournament import Referee

__all__ = ["Choosing", "PairwiseSelection", "Pick", "PointwiseSelection", "Selection",
           "Verifier", "best"]


class Verifier(Protocol):
    """A second model that scores candidates (a process reward model), with the image."""

    def start(self, image: PreparedImage, question: str) -> None:
        """Take a new question: encode its image once."""
        ...

    def score(self, stage: Stage | None, so_far: str, responses: Sequence[str]) -> list[float]:
        """One score per response (higher is better) as the next step after ``so_far``."""
        ...

    def finish(self) -> None:
        """The question is over: free what it held."""
        ...


@dataclass(frozen=True)
class Choosing:
    """What a selection may read about the segment it chooses in.

    Attributes:
        backend: The model the search runs on (the selection's own prompts go there).
        settings: The search's settings.
        question: The question, stripped.
        answer: The chosen text the candidates continue, tags included.
        unit: The stage of the candidates (None: whole answers or sentences).
        segment: The segment's number in the run.
        so_far: The chosen text before this segment (without the open tag the search wrote
            for it): what a prompt quotes as "the answer so far".
        sentence: The paper's sentence-level search: each candidate is the next sentence.
        verifier: A second model that scores candidates, when the search has one.
    """

    backend: SearchBackend
    settings: SearchSettings
    question: str
    answer: str
    unit: Stage | None
    segment: int
    so_far: str = ""
    sentence: bool = False
    verifier: Verifier | None = None


@dataclass(frozen=True)
class Pick:
    """A selection's outcome: the winner's index and one score per candidate."""

    winner: int
    scores: tuple[float, ...]


def best(scores: Sequence[float]) -> int:
    """The index of the highest score; the first of equal ones (NaN never wins)."""
    def key(i: int) -> tuple[float, int]:
        s = scores[i]
        return (-math.inf if math.isnan(s) else s, -i)

    return max(range(len(scores)), key=key)


class Selection(ABC):
    """How a segment's candidates are chosen among.

    Attributes:
        name: The name settings, the CLI and saved runs use.
        label: What Preferences shows.
        title: How exports and tables name it ("judge selection").
        help: One line for ``--select``'s help.
        pairwise: It decides through verdicts between pairs, which the views show.
        score_label: What a score means, for the candidates view ("mean log-probability").
        default_cutoff: Retrace's cutoff when none was calibrated: retrace goes back while
            the second-best reasoning score is not above it.
        needs_verifier: It scores with a second model (``SearchSettings.scorer_model``).
        reads_sampling: It scores how the model sampled a candidate (its log-probabilities
            or entropies), so it cannot score text that was not sampled.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    title: ClassVar[str]
    help: ClassVar[str]
    pairwise: ClassVar[bool] = False
    score_label: ClassVar[str] = "score"
    default_cutoff: ClassVar[float] = 0.5
    needs_verifier: ClassVar[bool] = False
    reads_sampling: ClassVar[bool] = False

    def unavailable(self, backend: SearchBackend) -> str | None:
        """Why this selection cannot run on ``backend`` (one line), or None when it can."""
        return None

    def verifier_for(self, engine: Engine) -> Verifier:
        """The second model's scorer on its loaded ``engine`` (``needs_verifier`` only).

        Raises:
            StagewiseError: The model cannot score this way (a PRM without "+"/"-" tokens).
        """
        raise NotImplementedError(f"the {self.name} selection scores with no second model")

    def context_cells(self, sizes: SearchSizes, segments: Segments) -> int:
        """Cells its own prompts hold at their peak, beyond the answer and the candidates
        (prompts fork the cached image: the image is not counted again)."""
        return 0

    def longest(self, sizes: SearchSizes, segments: Segments) -> int:
        """Positions its longest prompt takes after the image (0 when it asks none)."""
        return 0

    def format_score(self, score: float) -> str:
        """A score as people read it."""
        return f"{score:.3g}" if math.isfinite(score) else "n/a"

    @abstractmethod
    def choose(self, job: Choosing, candidates: Sequence[Candidate]
               ) -> Generator[Event, None, Pick]:
        """Choose among ``candidates`` (at least two); may yield events (verdicts, checks)
        and returns the :class:`Pick`."""


class PointwiseSelection(Selection):
    """A selection that scores each candidate on its own; the best score wins."""

    @abstractmethod
    def score(self, job: Choosing, candidates: Sequence[Candidate]) -> list[float]:
        """One score per candidate, higher is better."""

    def choose(self, job: Choosing, candidates: Sequence[Candidate]
               ) -> Generator[Event, None, Pick]:
        scores = tuple(self.score(job, candidates))
        return Pick(best(scores), scores)
        yield  # a generator that yields nothing


class PairwiseSelection(Selection):
    """A selection that decides pairs in a knockout
    (:class:`~stagewise.models.reasoning.tournament.Tournament`); its referee decides each
    pair."""

    pairwise = True

    @abstractmethod
    def referee(self) -> Referee:
        """Who decides a round's pairs."""

    @abstractmethod
    def scores(self, verdicts: Sequence[Verdict], n: int) -> tuple[float, ...]:
        """Each of ``n`` candidates' score from the knockout's verdicts (the winner's is the
        highest)."""

    def choose(self, job: Choosing, candidates: Sequence[Candidate]
               ) -> Generator[Event, None, Pick]:
        from stagewise.models.reasoning.tournament import Tournament

        tournament = Tournament(job, self.referee())
        winner = yield from tournament.run(candidates)
        return Pick(winner, self.scores(tournament.verdicts, len(candidates)))
