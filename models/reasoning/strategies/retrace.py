"""``retrace``: stage-wise retracing search (SWIRES), the final LLaVA-CoT paper's search.

The reference (``inference/VLMEvalKit/swires.py``) scores candidates with an external reward
model; here any selection that scores each candidate on its own does (``selfcheck``: the
model's own P("Yes") that a candidate is correct; ``logprob``; a second model).

For one question:

1. the summary, once;
2. a pass: :data:`CAPTIONS` captions, the best :data:`KEPT` by score kept; for each kept
   caption :data:`REASONINGS` reasonings, each scored; every scored reasoning is kept across
   passes. If the second-best reasoning score so far is not above the cutoff, retrace: a new
   pass, at most :data:`MAX_RETRACES` times;
3. one conclusion for each of the :data:`FINALISTS` best reasonings; the best-scored one,
   with its caption and reasoning, is the answer.

The cutoff is a percentile of the selection's scores on calibration questions (the paper:
the 60th, mean + 0.2533 std of its reward model's scores); :func:`calibrate` measures it.
Without one, the selection's ``default_cutoff`` is used (0.5 for probabilities: a reasoning
more likely right than wrong; log-probabilities never retrace).

Branches are rebuilt from text: a kept caption is not held in a sequence while others are
sampled; its tokens are evaluated again on a fork of the summary, which costs a short
prefill, not a generation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np

from stagewise.models.errors import StagewiseError
from stagewise.models.events import Event, Retraced, SegmentChosen
from stagewise.models.reasoning.search_backend import Piece
from stagewise.models.reasoning.search_sizes import JUDGE_FIXED_TOKENS, SearchSizes, Segments
from stagewise.models.reasoning.search_steps import SearchSteps
from stagewise.models.reasoning.segments import stage_segment
from stagewise.models.reasoning.strategies.base import Strategy
from stagewise.models.stages import Stage

if TYPE_CHECKING:
    from stagewise.models.inference.images import PreparedImage
    from stagewise.models.reasoning.search_settings import SearchSettings
    from stagewise.models.reasoning.selections import Selection

__all__ = ["CAPTIONS", "FINALISTS", "KEPT", "MAX_RETRACES", "REASONINGS", "RETRACE_SEQUENCES",
           "RetraceStrategy", "calibrate"]

CAPTIONS, KEPT, REASONINGS, FINALISTS, MAX_RETRACES = 4, 2, 2, 3, 4
RETRACE_SEQUENCES = 7
"""Sequences a retrace keeps alive at most: the summary, a branch, four candidates, a spare."""


@dataclass(frozen=True)
class _Branch:
    """A point to continue from: the chosen text after the summary, as pieces and text,
    and the (segment, candidate) picks that wrote it."""

    pieces: tuple[Piece, ...]
    text: str
    picks: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class _Base:
    """The summary's end, which every branch continues from."""

    mark: object
    answer: str


@dataclass(frozen=True)
class _Scored:
    score: float
    reasoning: _Branch  # the caption's pieces, text and pick included


class RetraceStrategy(Strategy):
    name = "retrace"
    label = "Stage by stage, going back when unsure (Retrace)"
    title = "stage-wise retracing search (SWIRES)"
    help = ("the final paper's search: scored captions and reasonings, going back to new "
            "captions while the second-best reasoning scores low (its own sizes; beam unused)")
    uses_beam = False
    keeps_best = True
    final_only = True
    pointwise_only = True
    default_select = "selfcheck"  # the model's own check, as the reference's reward model
    segment_word = "Candidate set"

    def sequences(self, beam: int) -> int:
        return max(2 * beam + 1, RETRACE_SEQUENCES)

    def segments(self, sizes: SearchSizes) -> Segments:
        return Segments(response=sizes.stage, hint=2 * sizes.stage)

    def context_cells(self, sizes: SearchSizes, selection: Selection) -> int:
        """The paper's sizes: the summary, a branch's caption and reasoning, four candidates
        and four scoring prompts (the answer so far and one candidate each), forked from
        the image."""
        s = sizes.stage
        scoring = CAPTIONS * (JUDGE_FIXED_TOKENS + 4 * s)
        return sizes.prompt + sizes.image + 3 * s + 4 * s + scoring

    def longest(self, sizes: SearchSizes, selection: Selection) -> int:
        return sizes.prompt + sizes.image + 4 * sizes.stage

    def run(self, steps: SearchSteps) -> Iterator[Event]:
        s, run, backend = steps.settings, steps.run, steps.backend
        cutoff = (s.retrace_cutoff if s.retrace_cutoff is not None
                  else steps.selection.default_cutoff)
        # 1. the summary, once; it stays the root every branch forks from
        summary = stage_segment(Stage.SUMMARY, s, steps.mode, run.answer)
        sampled, candidates = yield from steps.sample(summary, 1)
        steps.keep(sampled[0], summary)
        run.chosen.append((run.segment, 0))
        yield SegmentChosen(Stage.SUMMARY, run.segment, 0, candidates[0].text,
                            (candidates[0].mean_logprob,), 0.0)
        run.segment += 1
        base = _Base(backend.mark(), run.answer)
        scored: list[_Scored] = []
        for pass_no in range(MAX_RETRACES + 1):
            captions = yield from _sample(steps, base, _Branch((), ""), Stage.CAPTION, CAPTIONS)
            for caption in sorted(captions, key=lambda c: -c[0])[:KEPT]:
                reasonings = yield from _sample(steps, base, caption[1], Stage.REASONING,
                                                REASONINGS)
                scored += [_Scored(score, branch) for score, branch in reasonings]
            ranked = sorted((x.score for x in scored), reverse=True)
            second = ranked[1] if len(ranked) > 1 else -math.inf
            if second > cutoff or pass_no == MAX_RETRACES:
                break
            yield Retraced(pass_no, second, cutoff)
        finalists = sorted(scored, key=lambda x: -x.score)[:FINALISTS]
        best: tuple[float, _Branch] | None = None
        for finalist in finalists:
            (score, conclusion), = yield from _sample(steps, base, finalist.reasoning,
                                                      Stage.CONCLUSION, 1)
            if best is None or score > best[0]:
                best = (score, conclusion)
        assert best is not None
        backend.rewind(base.mark)
        run.answer = base.answer + best[1].text
        run.chosen += best[1].picks


def _sample(steps: SearchSteps, base: _Base, branch: _Branch, stage: Stage, n: int
            ) -> Iterator[Event]:
    """Sample ``n`` candidates of ``stage`` after ``branch``; score them; return
    ``[(score, branch extended by the candidate)]``."""
    t0 = time.perf_counter()
    run, backend = steps.run, steps.backend
    backend.rewind(base.mark)
    backend.branch(branch.pieces)
    run.answer = base.answer + branch.text
    seg = stage_segment(stage, steps.settings, steps.mode, run.answer)
    no = run.segment
    _, candidates = yield from steps.sample(seg, n)
    extended = []
    for c in candidates:
        closed = c.finish == "closed"
        pieces = [Piece(seg.prefix)] if seg.prefix else []
        pieces.append(Piece(c.text, c.tokens or None))
        if not closed:
            pieces.append(Piece(stage.close_tag))
        text = seg.prefix + c.text + ("" if closed else stage.close_tag)
        extended.append(_Branch((*branch.pieces, *pieces), branch.text + text,
                                (*branch.picks, (no, c.index))))
    backend.discard()
    pick = yield from steps.choose(stage, candidates)
    run.segment += 1
    seconds = time.perf_counter() - t0
    run.add_time(stage, seconds)
    yield SegmentChosen(stage, no, pick.winner, candidates[pick.winner].text, pick.scores,
                        seconds)
    return list(zip(pick.scores, extended, strict=True))


class _Asks(Protocol):
    """What answers questions (a :class:`~stagewise.models.session.Session`)."""

    def ask(self, image: PreparedImage, question: str, search: SearchSettings
            ) -> Iterator[Event]: ...


def calibrate(session: _Asks, items: Sequence[tuple[PreparedImage, str]],
              settings: SearchSettings, percentile: float = 60.0) -> float:
    """The cutoff: ``percentile`` of the selection's reasoning scores on calibration
    questions, each answered with one pass of retrace (no going back) on ``session``.

    Raises:
        StagewiseError: No reasoning was scored.
    """
    settings = replace(settings, strategy=RetraceStrategy.name, retrace_cutoff=-math.inf)
    scores: list[float] = []
    for image, question in items:
        for event in session.ask(image, question, settings):
            if isinstance(event, SegmentChosen) and event.unit is Stage.REASONING:
                scores += event.scores
    if not scores:
        raise StagewiseError("calibration scored no reasoning")
    return float(np.percentile(scores, percentile))
