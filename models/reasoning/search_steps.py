"""The steps a strategy writes an answer from, on one run of a search.

:class:`SearchSteps` holds one question's state (:class:`~stagewise.models.reasoning.search_run.
RunRecord`) and offers a strategy what it needs, each step yielding the events it causes:

* :meth:`~SearchSteps.run_segment`: sample a segment's N candidates, choose one, keep it;
* :meth:`~SearchSteps.sample`, :meth:`~SearchSteps.choose`, :meth:`~SearchSteps.keep` and
  :meth:`~SearchSteps.write` separately, for strategies that go back (retrace), with the
  backend's ``mark``/``rewind``/``branch``/``discard``.

Choosing goes through the run's selection
(:mod:`stagewise.models.reasoning.selections`); its verdicts and checks are recorded as they
stream, and each candidate keeps the score it was given.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass

from stagewise.models.events import (
    Candidate,
    CandidateFinished,
    CorrectnessChecked,
    Event,
    JudgeVerdict,
    SegmentChosen,
    SegmentStarted,
    TokenStreamed,
)
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.search_backend import Delta, Sampled, SearchBackend
from stagewise.models.reasoning.search_run import RunRecord
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.reasoning.segments import Segment
from stagewise.models.reasoning.selections import Choosing, Pick, Selection, Verifier
from stagewise.models.stages import Stage, StageParser

__all__ = ["SearchSteps"]


@dataclass
class SearchSteps:
    """One run's steps. Not thread-safe: the search's thread owns it.

    Attributes:
        backend: What runs the model.
        settings: The search's settings.
        mode: Native or prompted stages.
        run: What the run has chosen and spent so far.
        selection: How a candidate is chosen.
        verifier: A second model that scores candidates, when the selection uses one.
    """

    backend: SearchBackend
    settings: SearchSettings
    mode: StageMode
    run: RunRecord
    selection: Selection
    verifier: Verifier | None = None
    _before_prefix: str = ""  # the chosen text before the segment being sampled

    def run_segment(self, seg: Segment) -> Iterator[Event]:
        """Sample a segment's candidates, choose one and make it part of the answer."""
        run = self.run
        no = run.segment
        t0 = time.perf_counter()
        sampled, candidates = yield from self.sample(seg, self.settings.beam)
        if len(sampled) == 1:
            pick = Pick(0, (candidates[0].mean_logprob,))
        else:
            pick = yield from self.choose(seg.unit, candidates, sentence=seg.sentence)
        self.keep(sampled[pick.winner], seg)
        run.chosen.append((no, pick.winner))
        seconds = time.perf_counter() - t0
        run.add_time(seg.unit, seconds)
        run.segment += 1
        yield SegmentChosen(seg.unit, no, pick.winner, candidates[pick.winner].text,
                            pick.scores, seconds)

    def sample(self, seg: Segment, n: int
               ) -> Generator[Event, None, tuple[list[Sampled], list[Candidate]]]:
        """Write ``seg``'s prefix, then ``n`` candidates continuing the answer.

        Returns (as the generator's value) the sampled candidates and their records.
        """
        run = self.run
        no = run.segment
        yield SegmentStarted(seg.unit, no, n, seg.prefix)
        self._before_prefix = run.answer
        self.write(seg.prefix)
        request = seg.request(n, self.settings, no, run.answer, run.open_stage_tokens)
        run.unit = seg.unit
        sampled = yield from _streamed(self.backend.sample(request), seg.unit, no)
        candidates = run.add_candidates(seg.unit, sampled)
        for c in candidates:
            yield CandidateFinished(c)
        return sampled, candidates

    def choose(self, unit: Stage | None, candidates: Sequence[Candidate], *,
               sentence: bool = False) -> Generator[Event, None, Pick]:
        """Choose among the last sample's ``candidates`` through the run's selection; their
        records keep the scores it gave."""
        run = self.run
        job = Choosing(self.backend, self.settings, run.question.strip(), run.answer, unit,
                       run.segment, self._before_prefix, sentence=sentence,
                       verifier=self.verifier)
        t0 = time.perf_counter()
        choosing = self.selection.choose(job, candidates)
        try:
            while True:
                try:
                    event = next(choosing)
                except StopIteration as done:
                    pick: Pick = done.value
                    break
                if isinstance(event, JudgeVerdict):
                    run.verdicts.append(event.verdict)
                elif isinstance(event, CorrectnessChecked):
                    run.checks.append(event.check)
                yield event
        finally:
            run.judge_s += time.perf_counter() - t0
        run.set_scores(run.segment, pick.scores)
        return pick

    def keep(self, winner: Sampled, seg: Segment) -> None:
        """Make a candidate part of the answer; drop the others."""
        run = self.run
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
            self.run.answer += text
            self.backend.write(text)

    def _close_cut_stage(self) -> None:
        """Keep the four-stage structure: close a stage that its token budget cut off."""
        parser = StageParser()
        parser.feed(self.run.answer)
        if parser.current is not None:
            self.write(parser.current.close_tag)


def _streamed(deltas: Generator[Delta, None, list[Sampled]], unit: Stage | None, segment: int
              ) -> Generator[Event, None, list[Sampled]]:
    """The backend's text deltas as events; returns what the backend returns."""
    while True:
        try:
            delta = next(deltas)
        except StopIteration as done:
            return done.value
        yield TokenStreamed(unit, segment, delta.index, delta.text)
