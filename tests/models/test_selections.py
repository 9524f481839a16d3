"""The selections on the tiny random pair through real llama.cpp: the written judge as the
reference reads it, the fast verdict in both orders, entropy from the sampler's logits, and
the reference's wording."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from stagewise.models.events import AnswerFinished, SearchResult
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.images import PreparedImage
from stagewise.models.reasoning import judge as judging
from stagewise.models.reasoning.llama_backend import LlamaBackend
from stagewise.models.reasoning.llama_streams import token_stats
from stagewise.models.reasoning.search import StageSearch
from stagewise.models.reasoning.search_backend import Prompt
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.stages import STAGES, Stage

QUESTION = "How many red circles are there?"


def run(engine: Engine, image: PreparedImage, **settings: object) -> SearchResult:
    search = StageSearch(LlamaBackend(engine),
                         SearchSettings(**{"max_stage_tokens": 10, **settings}))
    events = list(search.run(image, QUESTION))
    assert isinstance(events[-1], AnswerFinished)
    return events[-1].result


def test_the_judges_reply_is_read_as_the_reference_reads_it():
    assert judging.read_choice("Since A is right, I choose response 1.") == (1, True)
    assert judging.read_choice("I choose response 2") == (2, True)
    assert judging.read_choice("Both are fine.") == (2, False)  # the reference's else
    assert judging.read_choice("I choose response 1 over response 2") == (1, True)
    text = "Since the caption counts three, I choose response 2. And more words"
    assert text[: judging.choice_stop(text)] == ("Since the caption counts three, I choose "
                                                 "response 2.")
    assert judging.choice_stop("Since the caption counts") is None


def test_the_reference_wording_is_the_references():
    text = judging.judge_text(Stage.REASONING, QUESTION, "a", "b", "three circles",
                              wording="reference")
    assert text.startswith("Now you act as a judge, helping me determine which of the two "
                           "texts I provide better explains the reasoning process")
    assert "\n\nHint about the Question: three circles\nRepsonse 1: a\nRepsonse 2: b\n\n" in text
    assert text.endswith('Output format: "Since [reason], I choose response [1/2]."')
    check = judging.reference_check_text("three circles", "so 3")
    assert "output 'correct'" in check and check.endswith("Reasoning Process: so 3")


def test_a_judged_run_reads_every_verdict_and_counts_the_unread(engine, image):
    result = run(engine, image, beam=4, select="judge", seed=5, max_judge_tokens=24)
    written = [v for v in result.verdicts if v.text]
    assert written
    for v in written:
        choice, named = judging.read_choice(v.text)
        assert v.winner == (v.first if choice == 1 else v.second)
        assert v.unread == (not named)
        assert len(v.text) < 24 * 20  # the stated budget bounds the reply
    data = result.to_json()
    assert all("unread" in v for v in data["verdicts"])


def test_the_order_of_a_pair_is_drawn_anew_every_match(engine, image):
    """The reference draws two candidates at random for every match; a winner shown as
    "Response 1" is not kept in that place in the next round."""
    kept, moved = 0, 0
    for seed in range(6):
        result = run(engine, image, beam=4, select="verdict", seed=seed)
        for segment in {v.segment for v in result.verdicts}:
            rounds = [v for v in result.verdicts if v.segment == segment]
            finals = [v for v in rounds if v.round == 1]
            first_round_firsts = {v.first for v in rounds if v.round == 0}
            for final in finals:
                winners_shown_first = final.first in first_round_firsts
                kept += winners_shown_first
                moved += not winners_shown_first
    assert kept and moved


def test_verdict_averages_both_orders(engine, image):
    result = run(engine, image, beam=2, select="verdict", seed=3, check_reasoning=False)
    assert len(result.verdicts) == 4
    backend = LlamaBackend(engine)
    backend.begin(image, QUESTION, engine.stage_mode, threading.Event())
    try:
        first = "a red circle at the top"
        second = "two blue squares"
        shown = Prompt(judging.judge_text(Stage.CAPTION, QUESTION, first, second), ())
        swapped = Prompt(judging.judge_text(Stage.CAPTION, QUESTION, second, first), ())
        p, q = backend.choice_probabilities([shown, swapped], judging.CHOICE_PHRASE, "12")
    finally:
        backend.end()
    assert sum(p) == pytest.approx(1.0) and sum(q) == pytest.approx(1.0)
    # a judge that always names "1" would give each response 0.5 once both orders count
    both = (p[0] + q[1]) / 2
    assert 0.0 < both < 1.0
    for v in result.verdicts:
        assert v.probability is not None and 0.5 <= v.probability <= 1.0
        assert str(round(v.probability, 2)) in v.reason or f"{v.probability:.2f}" in v.reason


def test_a_later_round_reads_only_its_second_response_and_answers_the_same(engine, image):
    """The verdict's final reuses the semifinal prompt that showed its first response
    first: it reads less, holds no more sequences than it asks prompts, and its
    probabilities are those of the same prompts asked afresh."""
    responses = ["a red circle at the top left of the picture", "two blue squares side by side",
                 "one green triangle under a red circle", "nothing but a white background"]

    def pair(a: int, b: int) -> list[Prompt]:
        return [Prompt(judging.judge_text(Stage.CAPTION, QUESTION, responses[x], responses[y]),
                       ()) for x, y in ((a, b), (b, a))]

    backend = LlamaBackend(engine)
    backend.begin(image, QUESTION, engine.stage_mode, threading.Event())
    try:
        free = backend._pool.free
        fresh = backend.choice_probabilities(pair(0, 2), judging.CHOICE_PHRASE, "12")
        with backend.judging() as session:
            session.choice_probabilities(pair(0, 1) + pair(2, 3), judging.CHOICE_PHRASE, "12")
            before = engine.stats.decoded_tokens
            final = session.choice_probabilities(pair(0, 2), judging.CHOICE_PHRASE, "12")
            read = engine.stats.decoded_tokens - before
            assert len(session.donors) == 2 + 2  # the two it reused, the two it asked
        assert backend._pool.free == free  # every sequence given back
    finally:
        backend.end()
    whole = len(engine.tokenize(pair(0, 2)[0].text, special=False))
    assert read < whole  # each final prompt read about a response and the end, not the task
    for got, want in zip(final, fresh, strict=True):
        assert got == pytest.approx(want, abs=2e-3)


def test_entropy_is_measured_from_the_samplers_logits(engine, image):
    rng = np.random.default_rng(0)
    row = rng.normal(size=500).astype(np.float32) * 3
    logprob, entropy = token_stats(row, 7)
    p = np.exp(row - row.max())
    p /= p.sum()
    assert logprob == pytest.approx(math.log(p[7]), rel=1e-5)
    assert entropy == pytest.approx(float(-(p * np.log(p)).sum()), rel=1e-5)
    result = run(engine, image, beam=3, select="entropy", seed=2)
    for stage in STAGES:
        cands = [c for c in result.candidates if c.unit is stage]
        assert all(c.mean_entropy is not None and c.mean_entropy > 0 for c in cands)
        chosen = next(i for seg, i in result.chosen if seg == cands[0].segment)
        assert cands[chosen].mean_entropy == min(c.mean_entropy for c in cands)
        assert all(c.score == pytest.approx(-c.mean_entropy) for c in cands)


def test_selfcheck_and_logprob_choose_in_every_strategy(engine, image):
    for strategy in ("stage", "sentence", "best-of-n", "retrace"):
        for select in ("selfcheck", "logprob", "entropy"):
            result = run(engine, image, strategy=strategy, beam=2, select=select, seed=1,
                         max_stage_tokens=6)
            assert result.status == "finished" and result.select == select
            assert any(c.score is not None for c in result.candidates)


def test_the_reference_checks_are_free_replies(engine, image):
    result = run(engine, image, beam=2, select="judge", judge_prompt="reference", seed=4,
                 max_judge_tokens=12)
    assert result.checks
    for check in result.checks:
        assert check.correct == ("incorrect" not in check.text)
