"""Beam "auto": the widest search this machine runs within twice a single pass.

Batched decoding costs little more per step than one sequence on a GPU or Apple silicon,
and nearly N times as much on a small CPU, so no fixed default beam suits every machine.
:class:`AutoBeam` decides from measurements on the loaded model:

1. until the first answer it says 1 (a single pass), which that answer then measures: its
   generation time per token of the answer;
2. right after it, :meth:`AutoBeam.measure` times a few raw decode steps of 1, 2 and 4
   sequences on the same context (:func:`step_seconds`), and predicts each width's cost as
   that step's cost over one sequence's;
3. after each later answer at a width, that answer's own cost per answer token, over the
   single pass's, replaces the prediction: what was measured wins over what was predicted.

The choice is the largest N in :data:`WIDTHS` whose cost is at most :data:`COST_LIMIT`
times a single pass. A beam set by hand never goes through here. Qt-free: the window and
``stagewise ask`` only show the choice and its reason.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stagewise.models.reasoning.strategies.stage import StageStrategy

if TYPE_CHECKING:
    from stagewise.models.events import SearchResult
    from stagewise.models.inference.engine import Engine

__all__ = ["AUTO_BEAM", "COST_LIMIT", "WIDTHS", "AutoBeam", "BeamChoice", "answer_cost",
           "step_seconds"]

AUTO_BEAM = 0
"""The beam setting that means "auto"."""
WIDTHS = (1, 2, 4)
"""The widths auto chooses between."""
COST_LIMIT = 2.0
"""The most a chosen width may cost, as a multiple of a single pass."""
PROBE_STEPS = 2
"""Decode steps timed per width (after one untimed step)."""


@dataclass(frozen=True)
class BeamChoice:
    """The width auto chose and why, in words for the status bar.

    Attributes:
        beam: The width to search with.
        reason: Why, e.g. "beam 2 (auto): 2 candidates cost 1.6× a single pass here,
            4 would cost 3.1×".
        costs: Each width's cost over a single pass, as last measured or predicted.
    """

    beam: int
    reason: str
    costs: dict[int, float]


def answer_cost(result: SearchResult) -> float | None:
    """Seconds of generation (prompt and judging included) per token of the chosen answer;
    None when the answer was cancelled or chose nothing."""
    if result.status != "finished" or not result.chosen:
        return None
    by_key = {(c.segment, c.index): c for c in result.candidates}
    tokens = sum(by_key[key].n_tokens for key in result.chosen if key in by_key)
    spent = result.timings.total_s - result.timings.prompt_s
    return spent / tokens if tokens > 0 and spent > 0 else None


def step_seconds(engine: Engine, widths: tuple[int, ...] = WIDTHS,
                 steps: int = PROBE_STEPS, rounds: int = 2) -> dict[int, float]:
    """Seconds of one decode step of ``n`` sequences together, for each ``n`` in ``widths``:
    the median of ``steps`` steps in each of ``rounds`` rounds that take the widths in
    turn (a machine's other work stalls a step now and then; the median ignores it).

    The steps run in the engine's highest sequence ids, which no search of these widths
    uses, from position 0 with one token per sequence, and are removed after: the cached
    image and prompts are left as they were.
    """
    token = engine.tokenize("a")[0]
    times: dict[int, list[float]] = {n: [] for n in widths}
    engine.cancel_event = threading.Event()
    top = engine.settings.n_seq_max - 1
    for _ in range(rounds):
        for n in widths:
            seqs = list(range(top - n + 1, top + 1))
            try:
                engine.decode([token] * n, [0] * n, seqs, [True] * n)  # untimed: first use
                for step in range(1, steps + 1):
                    start = time.perf_counter()
                    engine.decode([token] * n, [step] * n, seqs, [True] * n)
                    times[n].append(time.perf_counter() - start)
            finally:
                for seq in seqs:
                    engine.remove_seq(seq)
    return {n: statistics.median(ts) for n, ts in times.items()}


class AutoBeam:
    """The width for beam "auto" on one loaded model; see the module."""

    def __init__(self) -> None:
        self._single: float | None = None  # a single pass's cost per answer token
        self._predicted: dict[int, float] = {}
        self._measured: dict[int, float] = {}

    @property
    def ready(self) -> bool:
        """Whether a single pass has been measured (before, auto says 1)."""
        return self._single is not None

    def choice(self) -> BeamChoice:
        """The width for the next answer, and why."""
        if self._single is None:
            return BeamChoice(1, "beam 1 (auto): a single pass first, to measure this "
                                 "machine's speed", {})
        costs = {1: 1.0, **self._predicted, **self._measured}
        fits = [n for n in WIDTHS if costs.get(n, float("inf")) <= COST_LIMIT]
        beam = max(fits, default=1)
        parts = []
        for n in WIDTHS[1:]:
            if n in costs:
                how = "measured" if n in self._measured else "predicted"
                parts.append(f"{n} candidates cost {costs[n]:.1f}× a single pass ({how})")
        limit = f"the most within {COST_LIMIT:g}× a single pass on this machine"
        return BeamChoice(beam, f"beam {beam} (auto, {limit}): " + "; ".join(parts), costs)

    def observe(self, result: SearchResult, engine: Engine | None = None) -> BeamChoice:
        """Take an answer's timings (and, after the first single pass, the engine's step
        times for the prediction); the choice for the next answer.

        Args:
            result: A finished answer; a stage search of width 1, 2 or 4 counts.
            engine: The engine that answered; None (a server) predicts nothing.
        """
        cost = answer_cost(result)
        if cost is not None and result.strategy == StageStrategy.name:
            if result.beam == 1:
                first = self._single is None
                self._single = cost
                if first and engine is not None:
                    steps = step_seconds(engine)
                    base = steps.get(1, 0.0)
                    if base > 0:
                        self._predicted = {n: t / base for n, t in steps.items() if n > 1}
            elif result.beam in WIDTHS and self._single:
                self._measured[result.beam] = cost / self._single
        return self.choice()
