"""The strategies: what a search generates, one module each, in one registry.

:data:`STRATEGIES` is the list the CLI's ``--strategy``, Preferences, ``stagewise eval``, the
hardware need, the run view and the exports read. A plug-in (or a test) adds one with
``STRATEGIES.register(MyStrategy())``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stagewise.models.reasoning.registry import Registry
from stagewise.models.reasoning.search_sizes import SearchSizes
from stagewise.models.reasoning.selections import SELECTIONS
from stagewise.models.reasoning.strategies.base import Strategy
from stagewise.models.reasoning.strategies.best_of_n import BestOfNStrategy
from stagewise.models.reasoning.strategies.retrace import RetraceStrategy
from stagewise.models.reasoning.strategies.sentence import SentenceStrategy
from stagewise.models.reasoning.strategies.stage import StageStrategy

if TYPE_CHECKING:
    from stagewise.models.reasoning.search_settings import SearchSettings

__all__ = ["STRATEGIES", "Strategy", "context_need", "default_selection", "longest_sequence",
           "most_sequences", "search_sizes", "selection_name", "sequences_needed", "strategy"]

STRATEGIES: Registry[Strategy] = Registry("strategy")
for _builtin in (StageStrategy(), SentenceStrategy(), BestOfNStrategy(), RetraceStrategy()):
    STRATEGIES.register(_builtin)


def strategy(name: str) -> Strategy:
    """The strategy named ``name``.

    Raises:
        StagewiseError: There is none.
    """
    return STRATEGIES.get(name)


DEFAULT_SELECTION = "logprob"
"""The selection a search uses when neither the settings, the model nor the strategy name
one. Chosen by measurement (README, "Choosing a candidate"): on the demo's 300 validation
puzzles at N=4, log-probability and entropy selection answered best of the five the model
can run alone (54.0%; judge 53.3%, verdict 51.7%, self-check 48.0%), and log-probability
costs least. None of them beat greedy decoding there (56.0%)."""


def default_selection(name: str) -> str:
    """The selection a search of strategy ``name`` uses when none is asked for."""
    return STRATEGIES.get(name).default_select or DEFAULT_SELECTION


def selection_name(search: SearchSettings) -> str:
    """The selection a search with these settings uses: the one asked for, or the
    strategy's default."""
    return search.select or default_selection(search.strategy)


def sequences_needed(beam: int, name: str = StageStrategy.name) -> int:
    """Sequences a search of this strategy and beam width keeps alive at most."""
    return STRATEGIES.get(name).sequences(beam)


def most_sequences(beam: int) -> int:
    """Sequences the widest strategy needs at this beam width: what a load reserves, so
    that changing the strategy or the beam never reloads the model."""
    return max(s.sequences(beam) for s in STRATEGIES)


def search_sizes(search: SearchSettings, *, prompt_tokens: int, image_tokens: int
                 ) -> SearchSizes:
    """The sizes of a question asked with ``search``."""
    return SearchSizes(prompt_tokens, image_tokens, search.max_stage_tokens,
                       search.max_judge_tokens, max(1, search.beam), search.check_reasoning)


def context_need(search: SearchSettings, *, prompt_tokens: int, image_tokens: int) -> int:
    """Context cells a search with these settings fills at its peak (one question): its
    strategy's answer and candidates and its selection's prompts.

    Raises:
        StagewiseError: The strategy or the selection is unknown.
    """
    sizes = search_sizes(search, prompt_tokens=prompt_tokens, image_tokens=image_tokens)
    return STRATEGIES.get(search.strategy).context_cells(
        sizes, SELECTIONS.get(selection_name(search)))


def longest_sequence(search: SearchSettings, *, prompt_tokens: int, image_tokens: int) -> int:
    """The most positions one sequence of the search takes: an answer, or a selection's
    prompt forked from the image (what a model's trained context bounds)."""
    sizes = search_sizes(search, prompt_tokens=prompt_tokens, image_tokens=image_tokens)
    return STRATEGIES.get(search.strategy).longest(sizes,
                                                   SELECTIONS.get(selection_name(search)))
