"""Stage-wise retracing search (SWIRES) through real llama.cpp on the tiny pairs."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from stagewise.models.build.tiny_vlm import TinyPair
from stagewise.models.errors import StagewiseError
from stagewise.models.events import AnswerFinished, Event, Retraced, SearchResult, SegmentChosen
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.images import PreparedImage
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.llama_backend import LlamaBackend
from stagewise.models.reasoning.run_view import RunView
from stagewise.models.reasoning.search import SearchSettings, StageSearch
from stagewise.models.reasoning.strategies import retrace
from stagewise.models.reasoning.strategies.retrace import RETRACE_SEQUENCES
from stagewise.models.session import Session, plan
from stagewise.models.stages import STAGES, Stage

QUESTION = "How many red circles are there?"


def run(engine: Engine, image: PreparedImage, cancel: threading.Event | None = None,
        **settings: object) -> tuple[list[Event], SearchResult]:
    s = SearchSettings(**{"strategy": "retrace", "max_stage_tokens": 10, "seed": 1,
                          **settings})
    events = list(StageSearch(LlamaBackend(engine), s).run(image, QUESTION, cancel))
    assert isinstance(events[-1], AnswerFinished)
    return events, events[-1].result


def chosen_by_segment(events: list[Event]) -> dict[int, SegmentChosen]:
    return {e.segment: e for e in events if isinstance(e, SegmentChosen)}


@pytest.mark.parametrize("scorer", ["logprob", "selfcheck"])
def test_every_pointwise_selection_gives_four_stages_with_one_image_encode(engine, image,
                                                                          scorer):
    _, result = run(engine, image, select=scorer)
    assert result.status == "finished" and result.strategy == "retrace"
    for stage in STAGES:
        assert result.stages[stage].strip(), (stage, result.answer_text)
        assert result.answer_text.count(stage.open_tag) == 1
    assert result.timings.image_encodes == 1


def test_a_second_model_scores(tiny_pair: TinyPair, image):
    """The second model is loaded once per session, through its own load plan."""
    settings = SearchSettings(strategy="retrace", max_stage_tokens=10, seed=1, select="model",
                              scorer_model=tiny_pair.model)
    with Session(plan(tiny_pair.model, tiny_pair.mmproj,
                      EngineSettings(n_ctx=4096, threads=2))) as session:
        events = list(session.ask(image, QUESTION, settings))
        verifier = session.verifier(settings)
        again = list(session.ask(image, QUESTION, settings))
        assert session.verifier(settings) is verifier  # loaded once
    result = events[-1].result
    assert result.status == "finished"
    scores = [s for e in events if isinstance(e, SegmentChosen) and e.unit is Stage.CAPTION
              for s in e.scores]
    assert scores and all(0.0 <= s <= 1.0 for s in scores)
    assert len({round(s, 6) for s in scores}) > 1  # it tells candidates apart

    def picked(evs):  # a scorer loaded once serves every question alike
        return [(e.segment, e.candidate, e.scores) for e in evs if isinstance(e, SegmentChosen)]

    assert picked(events) == picked(again)
    assert all(c.score is not None for c in result.candidates if c.unit is not Stage.SUMMARY)


def test_the_model_selection_needs_a_model(engine, tiny_pair: TinyPair):
    with pytest.raises(StagewiseError, match="second model"):
        StageSearch(LlamaBackend(engine), SearchSettings(strategy="retrace", select="model"))
    with Session(plan(tiny_pair.model, tiny_pair.mmproj, EngineSettings(n_ctx=4096,
                                                                        threads=2))) as session,\
            pytest.raises(StagewiseError, match="second model"):
        session.search(SearchSettings(strategy="retrace", select="model"))


def test_retrace_refuses_a_pairwise_selection(engine):
    with pytest.raises(StagewiseError, match="scores each candidate on its own"):
        StageSearch(LlamaBackend(engine), SearchSettings(strategy="retrace", select="judge"))


def test_a_low_second_best_retraces_up_to_the_papers_limit(engine, image):
    events, result = run(engine, image, select="selfcheck", retrace_cutoff=2.0)
    retraces = [e for e in events if isinstance(e, Retraced)]
    assert [r.pass_no for r in retraces] == list(range(retrace.MAX_RETRACES))
    assert all(r.cutoff == 2.0 and r.second_best <= 2.0 for r in retraces)
    captions = [e for e in events if isinstance(e, SegmentChosen) and e.unit is Stage.CAPTION]
    reasonings = [e for e in events
                  if isinstance(e, SegmentChosen) and e.unit is Stage.REASONING]
    passes = retrace.MAX_RETRACES + 1
    assert len(captions) == passes and all(len(c.scores) == retrace.CAPTIONS for c in captions)
    assert len(reasonings) == passes * retrace.KEPT
    assert result.status == "finished"


def test_a_high_second_best_stops_after_one_pass(engine, image):
    events, _ = run(engine, image, select="selfcheck", retrace_cutoff=-math.inf)
    assert not any(isinstance(e, Retraced) for e in events)
    events, _ = run(engine, image, select="logprob")  # its default never retraces
    assert not any(isinstance(e, Retraced) for e in events)


def test_the_answer_is_the_best_scored_conclusions_path(engine, image):
    events, result = run(engine, image, select="logprob")
    chosen = chosen_by_segment(events)
    conclusions = [e for e in chosen.values() if e.unit is Stage.CONCLUSION]
    assert len(conclusions) == retrace.FINALISTS
    best = max(conclusions, key=lambda e: e.scores[e.candidate])
    picks = dict(result.chosen)
    assert picks[best.segment] == best.candidate
    units = [chosen[no].unit for no, _ in result.chosen]
    assert units == list(STAGES)
    by_key = {(c.segment, c.index): c for c in result.candidates}
    for no, index in result.chosen:
        assert by_key[(no, index)].text.strip() in result.answer_text
    reasoning_no = next(no for no, _ in result.chosen if chosen[no].unit is Stage.REASONING)
    finalists = sorted((s for e in chosen.values() if e.unit is Stage.REASONING
                        for s in e.scores), reverse=True)[: retrace.FINALISTS]
    reasoning = chosen[reasoning_no]
    assert reasoning.scores[picks[reasoning_no]] in finalists


def test_calibration_is_the_percentile_of_reasoning_scores(tiny_pair: TinyPair, image):
    settings = SearchSettings(strategy="retrace", select="selfcheck",
                              max_stage_tokens=10, seed=3)
    with Session(plan(tiny_pair.model, tiny_pair.mmproj,
                      EngineSettings(n_ctx=4096, threads=2))) as session:
        cutoff = retrace.calibrate(session, [(image, QUESTION)], settings, percentile=60)
        events = list(session.ask(image, QUESTION, SearchSettings(
            strategy="retrace", select="selfcheck", max_stage_tokens=10, seed=3,
            retrace_cutoff=-math.inf)))
    scores = [s for e in events if isinstance(e, SegmentChosen) and e.unit is Stage.REASONING
              for s in e.scores]
    assert len(scores) == retrace.KEPT * retrace.REASONINGS
    assert cutoff == pytest.approx(float(np.percentile(scores, 60)))


def test_the_live_view_ends_with_the_answer_and_shows_the_retraces(engine, image):
    events, result = run(engine, image, select="selfcheck", retrace_cutoff=2.0)
    view = RunView()
    view.apply_all(events)
    for stage in STAGES:
        assert view.stages[stage].text == result.stages[stage]
    retraced = [s for s in view.segments if s.retraced is not None]
    assert len(retraced) == retrace.MAX_RETRACES
    assert all(s.unit is Stage.REASONING for s in retraced)


def test_a_stop_mid_retrace_keeps_a_well_formed_result(engine, image):
    cancel = threading.Event()
    events = []
    search = StageSearch(LlamaBackend(engine), SearchSettings(
        strategy="retrace", max_stage_tokens=10, select="logprob"))
    for event in search.run(image, QUESTION, cancel):
        events.append(event)
        if isinstance(event, SegmentChosen) and event.unit is Stage.CAPTION:
            cancel.set()
    assert isinstance(events[-1], AnswerFinished)
    assert events[-1].result.status == "cancelled"


def test_native_mode_runs(engine, image):
    _, result = run(engine, image, select="logprob", mode=StageMode.NATIVE)
    assert result.status == "finished" and result.mode == "native"


def test_too_few_sequences_are_refused(tiny_pair: TinyPair):
    settings = EngineSettings(n_ctx=2048, n_seq_max=RETRACE_SEQUENCES - 1, threads=2)
    with Engine(tiny_pair.model, tiny_pair.mmproj, settings) as small, \
            pytest.raises(StagewiseError, match="sequences"):
        StageSearch(LlamaBackend(small), SearchSettings(strategy="retrace"))
