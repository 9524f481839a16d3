"""RunView: what a front end shows, folded from real search events."""

from __future__ import annotations

import itertools
import threading

import pytest

from stagewise.models.events import AnswerFinished, SegmentChosen, TokenStreamed
from stagewise.models.reasoning.llama_backend import LlamaBackend
from stagewise.models.reasoning.run_view import RunStatus, RunView, StageStatus
from stagewise.models.reasoning.search import StageSearch
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.stages import STAGES, Stage


def run(engine, image, cancel_after_first_token_of: Stage | None = None, **settings):
    cancel = threading.Event()
    events = []
    search = StageSearch(LlamaBackend(engine), SearchSettings(**settings))
    for event in search.run(image, "What?", cancel):
        events.append(event)
        stop_at = cancel_after_first_token_of
        if stop_at is not None and isinstance(event, TokenStreamed) and event.unit is stop_at:
            cancel.set()
    return events


@pytest.mark.parametrize("strategy", ["stage", "sentence", "best-of-n"])
def test_a_replayed_result_looks_like_the_live_run(engine, image, strategy):
    events = run(engine, image, strategy=strategy, beam=2, max_stage_tokens=12)
    live = RunView()
    live.apply_all(events)
    replayed = RunView.from_result(events[-1].result)
    assert live.status is replayed.status is RunStatus.FINISHED
    for stage in STAGES:
        a, b = live.stages[stage], replayed.stages[stage]
        assert a.text and a.text == b.text
        assert a.status is b.status is StageStatus.CHOSEN
        assert [s.chosen for s in a.segments] == [s.chosen for s in b.segments]
        assert [s.scores for s in a.segments] == [s.scores for s in b.segments]
        for sa, sb in zip(a.segments, b.segments, strict=True):
            assert [sa.content(c, stage) for c in sa.candidates] == \
                   [sb.content(c, stage) for c in sb.candidates]


def test_texts_follow_the_leading_candidate_while_it_streams(engine, image):
    view = RunView()
    seen = []
    for event in run(engine, image, beam=2, max_stage_tokens=12):
        view.apply(event)
        if isinstance(event, TokenStreamed) and event.unit is Stage.SUMMARY:
            seen.append(view.stages[Stage.SUMMARY].text)
        if isinstance(event, SegmentChosen) and event.unit is Stage.SUMMARY:
            assert view.stages[Stage.SUMMARY].status is StageStatus.CHOSEN
            assert view.stages[Stage.CAPTION].status is StageStatus.WAITING
    growing = [t for t in seen if t]
    assert growing and all(b.startswith(a) for a, b in itertools.pairwise(growing))


def test_a_stop_keeps_the_text_the_leader_had_written(engine, image):
    events = run(engine, image, cancel_after_first_token_of=Stage.CAPTION, beam=2,
                 max_stage_tokens=64)
    assert isinstance(events[-1], AnswerFinished)
    live = RunView()
    live.apply_all(events)
    assert live.status is RunStatus.CANCELLED
    assert live.stages[Stage.SUMMARY].status is StageStatus.CHOSEN
    assert live.stages[Stage.CAPTION].status is StageStatus.STOPPED
    assert live.stages[Stage.CAPTION].text
    assert live.stages[Stage.REASONING].status is StageStatus.WAITING
    replayed = RunView.from_result(events[-1].result)
    assert replayed.stages[Stage.CAPTION].text == live.stages[Stage.CAPTION].text


def test_a_run_that_ended_without_an_answer(engine, image):
    view = RunView()
    events = run(engine, image, beam=2, max_stage_tokens=12)
    view.apply_all(events[:5])
    view.end(RunStatus.FAILED, "the context is full")
    assert view.status is RunStatus.FAILED and view.done
    assert view.error == "the context is full"
    assert all(v.status in (StageStatus.WAITING, StageStatus.CHOSEN, StageStatus.STOPPED)
               for v in view.stages.values())


def test_doubts_name_failed_checks_and_unread_verdicts(engine, image):
    """Several seeds, so that some reasoning segments have every check failed and some
    verdicts name neither response (the tiny model rarely finishes a verdict)."""
    from dataclasses import replace

    from stagewise.models.events import Check

    seen_failed = seen_forced = False
    for seed in range(4):
        view = RunView()
        for event in run(engine, image, beam=2, max_stage_tokens=12, seed=seed,
                         select="judge"):
            view.apply(event)
        doubts = view.doubts()
        for seg in view.segments:
            failed = bool(seg.checks) and not any(c.correct for c in seg.checks)
            forced = any(v.unread for v in seg.verdicts)
            where = seg.unit.title if seg.unit else "answer"
            assert failed == any(f"called every {where} candidate wrong" in d for d in doubts)
            assert forced == any(f"on the {where} candidates" in d for d in doubts)
            cut = seg.chosen is not None and seg.candidates[seg.chosen].finish == "length"
            assert cut == any(f"The chosen {where} was cut off at its token budget" in d
                              for d in doubts)
            seen_failed |= failed
            seen_forced |= forced
    assert seen_forced
    if not seen_failed:  # make one segment's checks all fail and see it named
        seg = next(s for s in view.segments if s.checks)
        seg.checks = [replace(c, correct=False) for c in seg.checks if isinstance(c, Check)]
    # the check is the model's own: said so, with how reliable its judge has measured, and
    # never as a finding about the answer
    said = next(d for d in view.doubts() if "candidate wrong" in d)
    assert "the model judging itself" in said and "%" in said and "not a finding" in said
