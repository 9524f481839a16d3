"""Stage-level beam search (LLaVA-CoT) and its baselines, over a :class:`SearchBackend`.

The answer grows segment by segment (:mod:`stagewise.models.reasoning.segments`): a stage
(stage-level beam search), a sentence (sentence-level beam search) or the whole answer (best-of-N).
For each segment the backend writes N candidates continuing the chosen text; one is chosen, by mean
log-probability or by the model judging pairs in a knockout
(:mod:`stagewise.models.reasoning.tournament`), and becomes part of the chosen text. Retrace
(:mod:`stagewise.models.reasoning.retrace`) goes back to earlier points instead.

:meth:`StageSearch.run` yields :mod:`stagewise.models.events` and ends with one
:class:`~stagewise.models.events.AnswerFinished`, also when cancelled. On llama.cpp in this process
(an :class:`~stagewise.models.inference.engine.Engine`) the image and question are evaluated once
per question and candidates decode together (:mod:`stagewise.models.reasoning.llama_backend`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator, Sequence
from typing import TYPE_CHECKING

from stagewise.models.errors import Cancelled, StagewiseError
from stagewise.models.events import (
    AnswerFinished,
    CandidateFinished,
    Event,
    PromptEvaluated,
    RunStarted,
    SegmentChosen,
    SegmentStarted,
    TokenStreamed,
)
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.images import PreparedImage
from stagewise.models.reasoning.conversation import Turn, answer_room
from stagewise.models.reasoning.llama_backend import LlamaBackend
from stagewise.models.reasoning.search_backend import Delta, PromptInfo, Sampled, SearchBackend
from stagewise.models.reasoning.search_run import RunRecord
from stagewise.models.reasoning.search_settings import (
    MAX_BEAM,
    RETRACE_SCORERS,
    SELECTIONS,
    STRATEGIES,
    SearchSettings,
    sequences_needed,
)
from stagewise.models.reasoning.segments import Segment, plan
from stagewise.models.reasoning.stages import Stage, StageParser
from stagewise.models.reasoning.tournament import Tournament

if TYPE_CHECKING:
    from stagewise.models.events import Candidate
    from stagewise.models.reasoning.retrace import ModelScorer

__all__ = ["StageSearch"]


class StageSearch:
    """Runs searches on a backend, one question at a time (not thread-safe)."""

    def __init__(self, backend: SearchBackend | Engine, settings: SearchSettings | None = None,
                 *, scorer_model: ModelScorer | None = None) -> None:
        """Check the settings against the backend.

        Args:
            backend: What runs the model; an :class:`Engine` runs it in this process.
            settings: The search's parameters.
            scorer_model: For retrace with the "model" scorer, the second model, loaded
                once by the caller; without it one is loaded for each run.

        Raises:
            StagewiseError: A setting is out of range, or the search needs more
                sequences than the backend has.
        """
        self.backend = LlamaBackend(backend) if isinstance(backend, Engine) else backend
        self.settings = s = settings or SearchSettings()
        self.scorer_model = scorer_model
        _check_settings(s, self.backend.max_candidates, scorer_model)
        self.mode = s.mode or self.backend.stage_mode
        self.run_record: RunRecord | None = None

    # -- the run --------------------------------------------------------------------------

    def run(self, image: PreparedImage, question: str,
            cancel: threading.Event | None = None, *,
            earlier: Sequence[Turn] = ()) -> Iterator[Event]:
        """Answer ``question`` about ``image``, yielding events.

        The last event is :class:`AnswerFinished`, also when ``cancel`` is set mid-run (its
        result's status says "cancelled" and keeps what was chosen so far).

        A follow-up has the ``earlier`` turns of its thread (oldest first) in its prompt
        (:mod:`stagewise.models.reasoning.conversation`); the oldest are left out when the
        answer would not fit the context otherwise, and the prompt's event and the
        result's timings say how many were kept and left out.

        Raises:
            EngineError: The backend failed (the context is full, say); nothing is
                yielded after it.
        """
        s, backend = self.settings, self.backend
        run = self.run_record = RunRecord(question, backend.stats())
        yield RunStarted(question, s.strategy, s.beam, s.select, self.mode.value, s.seed)
        status = "finished"
        try:
            info = self._begin(image, question, cancel or threading.Event(), earlier)
            run.prompt_s = time.perf_counter() - run.start
            run.earlier_turns, run.dropped_turns = info.earlier_turns, info.dropped_turns
            yield PromptEvaluated(info.n_tokens, info.n_pos, run.prompt_s,
                                  info.earlier_turns, info.dropped_turns)
            if s.strategy == "retrace":
                from stagewise.models.reasoning import retrace

                yield from retrace.run_retrace(self, image)
            else:
                for segment in plan(s, self.mode, run.chosen_so_far):
                    yield from self.run_segment(segment)
        except Cancelled:
            status = "cancelled"
            if unfinished := backend.unfinished():  # keep what the candidates had written
                run.add_candidates(run.unit, unfinished, counted=False)
        finally:
            backend.end()
        yield AnswerFinished(run.result(s, self.mode.value, status, backend.stats()))

    def _begin(self, image: PreparedImage, question: str, cancel: threading.Event,
               earlier: Sequence[Turn]) -> PromptInfo:
        """The backend's :meth:`~SearchBackend.begin`; a follow-up's turns, and the room
        its answer needs, are passed only when there are earlier turns."""
        if not earlier:
            return self.backend.begin(image, question, self.mode, cancel)
        return self.backend.begin(image, question, self.mode, cancel,
                                  earlier=tuple(earlier), room=answer_room(self.settings))

    # -- one segment ----------------------------------------------------------------------

    def run_segment(self, seg: Segment) -> Iterator[Event]:
        """Sample a segment's candidates, choose one and make it part of the answer."""
        s, run = self.settings, self._run
        no = run.segment
        t0 = time.perf_counter()
        sampled, candidates = yield from self.sample(seg, s.beam)
        if len(sampled) == 1:
            winner, scores = 0, (candidates[0].mean_logprob,)
        elif s.select == "logprob":
            scores = tuple(c.mean_logprob for c in candidates)
            winner = max(range(len(scores)), key=lambda i: (scores[i], -i))
        else:
            winner = yield from self._judge(seg, candidates)
            scores = tuple(float(sum(v.winner == c.index for v in run.verdicts
                                     if v.segment == no)) for c in candidates)
        self.keep(sampled[winner], seg)
        run.chosen.append((no, winner))
        seconds = time.perf_counter() - t0
        run.add_time(seg.unit, seconds)
        run.segment += 1
        yield SegmentChosen(seg.unit, no, winner, candidates[winner].text, scores, seconds)

    def sample(self, seg: Segment, n: int) -> Iterator[Event]:
        """Write ``seg``'s prefix, then ``n`` candidates continuing the answer.

        Returns (as the generator's value) the sampled candidates and their records.
        """
        run = self._run
        no = run.segment
        yield SegmentStarted(seg.unit, no, n, seg.prefix)
        self.write(seg.prefix)
        request = seg.request(n, self.settings, no, run.answer, run.open_stage_tokens)
        run.unit = seg.unit
        sampled = yield from _streamed(self.backend.sample(request), seg.unit, no)
        candidates = run.add_candidates(seg.unit, sampled)
        for c in candidates:
            yield CandidateFinished(c)
        return sampled, candidates

    def keep(self, winner: Sampled, seg: Segment) -> None:
        """Make a candidate part of the answer; drop the others."""
        run = self._run
        self.backend.keep(winner.index)
        run.answer += winner.text
        run.open_stage_tokens = winner.stage_tokens
        run.answer_tokens += winner.n_tokens
        if winner.finish == "eog":
            run.ended = True
        # a stage its budget cut off is closed; a sentence may end mid-stage, but a
        # sentence that spent the whole answer's budget closes the stage it is in
        if winner.finish == "length" or (winner.finish != "closed" and not seg.sentence):
            self._close_cut_stage()

    def write(self, text: str) -> None:
        """Append text the search writes itself (tags) to the answer."""
        if text:
            self._run.answer += text
            self.backend.write(text)

    def _close_cut_stage(self) -> None:
        """Keep the four-stage structure: close a stage that its token budget cut off."""
        parser = StageParser()
        parser.feed(self._run.answer)
        if parser.current is not None:
            self.write(parser.current.close_tag)

    def _judge(self, seg: Segment, candidates: list[Candidate]) -> Iterator[Event]:
        run = self._run
        t0 = time.perf_counter()
        tournament = Tournament(self.backend, self.settings, run.question.strip(), run.answer,
                                seg.unit, run.segment, sentence=seg.sentence)
        try:
            return (yield from tournament.run(candidates))
        finally:
            run.verdicts += tournament.verdicts
            run.checks += tournament.checks
            run.judge_s += time.perf_counter() - t0

    @property
    def _run(self) -> RunRecord:
        assert self.run_record is not None, "no run in progress"
        return self.run_record


def _streamed(deltas: Generator[Delta, None, list[Sampled]], unit: Stage | None, segment: int
              ) -> Generator[Event, None, list[Sampled]]:
    """The backend's text deltas as events; returns what the backend returns."""
    while True:
        try:
            delta = next(deltas)
        except StopIteration as done:
            return done.value
        yield TokenStreamed(unit, segment, delta.index, delta.text)


def _check_settings(s: SearchSettings, max_candidates: int,
                    scorer_model: ModelScorer | None) -> None:
    if not 1 <= s.beam <= MAX_BEAM:
        raise StagewiseError(f"the beam width must be between 1 and {MAX_BEAM}")
    if s.strategy not in STRATEGIES:
        raise StagewiseError(f"unknown strategy {s.strategy!r}: use one of {STRATEGIES}")
    if s.select not in SELECTIONS:
        raise StagewiseError(f"unknown selection {s.select!r}: use one of {SELECTIONS}")
    needed = sequences_needed(s.beam, s.strategy)
    if needed > max_candidates:
        raise StagewiseError(
            f"{s.strategy} search with beam width {s.beam} needs {needed} sequences, but "
            f"the engine was loaded with n_seq_max={max_candidates}")
    if s.strategy != "retrace":
        return
    if s.retrace_scorer not in RETRACE_SCORERS:
        raise StagewiseError(f"unknown retrace scorer {s.retrace_scorer!r}: use one "
                             f"of {RETRACE_SCORERS}")
    if s.retrace_scorer == "model" and scorer_model is None and s.scorer_model is None:
        raise StagewiseError("the model scorer needs a second model (--scorer-model)")
