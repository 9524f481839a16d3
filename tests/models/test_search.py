"""Stage-level beam search through real llama.cpp on the tiny random-weight pair."""

from __future__ import annotations

import threading

import pytest

from stagewise.models.errors import StagewiseError
from stagewise.models.events import (
    AnswerFinished,
    CandidateFinished,
    Event,
    JudgeVerdict,
    SearchResult,
    SegmentChosen,
    TokenStreamed,
)
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.images import PreparedImage
from stagewise.models.inference.sampling_settings import GREEDY
from stagewise.models.reasoning.llama_backend import LlamaBackend
from stagewise.models.reasoning.search import SearchSettings, StageSearch
from stagewise.models.stages import STAGES, Stage

QUESTION = "How many red circles are there?"


def run(engine: Engine, image: PreparedImage, cancel: threading.Event | None = None,
        **settings: object) -> tuple[list[Event], SearchResult]:
    search = StageSearch(LlamaBackend(engine),
                         SearchSettings(**{"max_stage_tokens": 12, **settings}))
    events = list(search.run(image, QUESTION, cancel))
    assert isinstance(events[-1], AnswerFinished)
    assert sum(isinstance(e, AnswerFinished) for e in events) == 1
    return events, events[-1].result


@pytest.mark.parametrize(("strategy", "beam", "select"), [
    ("stage", 1, "logprob"),
    ("stage", 3, "logprob"),
    ("stage", 2, "judge"),
    ("sentence", 2, "logprob"),
    ("best-of-n", 2, "judge"),
])
def test_prompted_mode_always_yields_four_stages(engine, image, strategy, beam, select):
    _, result = run(engine, image, strategy=strategy, beam=beam, select=select, seed=3)
    assert result.status == "finished"
    for stage in STAGES:
        assert result.stages[stage].strip(), f"{stage} is empty in {result.answer_text!r}"
        assert result.answer_text.count(stage.open_tag) == 1
        assert result.answer_text.count(stage.close_tag) == 1
    order = [result.answer_text.index(s.open_tag) for s in STAGES]
    assert order == sorted(order)


def test_each_stage_has_n_candidates_and_one_winner(engine, image):
    events, result = run(engine, image, beam=3, select="logprob", seed=1)
    for stage in STAGES:
        mine = [c for c in result.candidates if c.unit is stage]
        assert [c.index for c in mine] == [0, 1, 2]
    assert len(result.chosen) == 4
    chosen = [e for e in events if isinstance(e, SegmentChosen)]
    assert [e.unit for e in chosen] == list(STAGES)
    for event in chosen:  # logprob picks the best mean log-probability
        best = max(event.scores)
        assert event.scores[event.candidate] == best
    # candidates differ: each has its own seed
    texts = {c.text for c in result.candidates if c.unit is Stage.CAPTION}
    assert len(texts) > 1


def test_streamed_tokens_add_up_to_each_candidate(engine, image):
    events, _result = run(engine, image, beam=2, select="logprob", seed=5)
    streamed: dict[tuple[int, int], str] = {}
    for e in events:
        if isinstance(e, TokenStreamed):
            streamed[(e.segment, e.candidate)] = streamed.get((e.segment, e.candidate), "") + e.text
    finished = [e.candidate for e in events if isinstance(e, CandidateFinished)]
    assert len(finished) == 8
    for c in finished:
        assert streamed[(c.segment, c.index)] == c.text


def test_greedy_forks_match_a_fresh_single_sequence_run(engine, image):
    _, single = run(engine, image, beam=1, sampling=GREEDY)
    _, forked = run(engine, image, beam=3, select="logprob", sampling=GREEDY)
    assert forked.answer_text == single.answer_text
    for stage in STAGES:
        reference = next(c for c in single.candidates if c.unit is stage)
        for c in (c for c in forked.candidates if c.unit is stage):
            assert c.tokens == reference.tokens


def test_a_fixed_seed_reproduces_the_whole_search(engine, image):
    _, a = run(engine, image, beam=3, select="judge", seed=11)
    _, b = run(engine, image, beam=3, select="judge", seed=11)
    _, c = run(engine, image, beam=3, select="judge", seed=12)
    assert a.answer_text == b.answer_text
    assert [x.text for x in a.candidates] == [x.text for x in b.candidates]
    assert [(v.first, v.second, v.winner, v.text) for v in a.verdicts] == \
           [(v.first, v.second, v.winner, v.text) for v in b.verdicts]
    assert [x.text for x in a.candidates] != [x.text for x in c.candidates]


def test_the_judge_runs_a_tournament_and_records_verdicts(engine, image):
    events, result = run(engine, image, beam=4, select="judge", seed=2)
    verdicts = [e.verdict for e in events if isinstance(e, JudgeVerdict)]
    assert verdicts == list(result.verdicts)
    for stage in STAGES:  # a knockout of 4 takes 3 comparisons
        mine = [v for v in verdicts if v.unit is stage]
        assert len(mine) == 3
        assert all(v.winner in (v.first, v.second) for v in mine)
        assert max(v.round for v in mine) == 1
    for segment, winner in result.chosen:  # the winner won the final
        final = max((v for v in verdicts if v.segment == segment), key=lambda v: v.round)
        assert final.winner == winner
    # reasoning candidates got the text-only correctness check
    assert sorted(c.candidate for c in result.checks) == [0, 1, 2, 3]
    from stagewise.models.reasoning.judge import read_choice

    for v in verdicts:
        if not v.text:  # decided by the correctness check, not by a judge call
            loser = v.second if v.winner == v.first else v.first
            assert v.reason == f"candidate {loser + 1} failed the correctness check"
        else:  # a free reply, read as the reference reads it
            choice, named = read_choice(v.text)
            assert v.winner == (v.first if choice == 1 else v.second)
            assert v.unread == (not named)


def test_the_image_is_encoded_once_per_question_even_with_a_judge(engine, image):
    before = engine.stats.image_encodes
    _, result = run(engine, image, beam=4, select="judge", seed=4)
    assert result.timings.image_encodes == 1
    assert engine.stats.image_encodes - before == 1


def test_cancel_stops_within_one_decode_step(engine, image):
    cancel = threading.Event()
    search = StageSearch(LlamaBackend(engine),
                         SearchSettings(beam=2, select="logprob", max_stage_tokens=40))
    calls_at_cancel = None
    events = []
    for event in search.run(image, QUESTION, cancel):
        events.append(event)
        if isinstance(event, TokenStreamed) and event.unit is Stage.CAPTION \
                and calls_at_cancel is None:
            cancel.set()
            calls_at_cancel = engine.stats.decode_calls
    result = events[-1].result
    assert result.status == "cancelled"
    assert engine.stats.decode_calls == calls_at_cancel  # not one more decode
    assert result.stages[Stage.SUMMARY]  # what was chosen before the cancel is kept
    in_flight = [c for c in result.candidates if c.unit is Stage.CAPTION]
    assert [c.finish for c in in_flight] == ["cancelled", "cancelled"]
    assert all(c.text for c in in_flight)  # and what the candidates had written
    # the engine is usable afterwards
    _, again = run(engine, image, beam=1)
    assert again.status == "finished"


def test_cancel_reaches_llama_decode_through_the_abort_callback(engine, image, monkeypatch):
    from stagewise.models.errors import Cancelled

    engine.clear()
    tokens = engine.tokenize("hello there " * 20)
    engine.cancel_event = threading.Event()
    engine.cancel_event.set()
    monkeypatch.setattr(engine, "_check_cancel", lambda: None)  # only the C callback remains
    with pytest.raises(Cancelled):
        engine.decode(tokens, list(range(len(tokens))), [0] * len(tokens),
                      [False] * len(tokens))
    engine.cancel_event = threading.Event()
    engine.clear()


class CountingEvent(threading.Event):
    """A cancel event that counts how often it is read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def is_set(self) -> bool:
        self.reads += 1
        return super().is_set()


def test_a_search_step_runs_without_the_per_node_abort_callback(engine, monkeypatch):
    """A step of at most STEP_TOKENS tokens reads the cancel event once, before it; a
    longer batch after it still has llama.cpp ask it node by node, and a stop ends it."""
    from stagewise.models.errors import Cancelled
    from stagewise.models.inference.engine import STEP_TOKENS

    engine.clear()
    tokens = engine.tokenize("hello there " * 20)
    assert len(tokens) > STEP_TOKENS
    engine.cancel_event = CountingEvent()
    try:
        engine.decode(tokens[:STEP_TOKENS], list(range(STEP_TOKENS)), [0] * STEP_TOKENS,
                      [False] * (STEP_TOKENS - 1) + [True])
        assert engine.cancel_event.reads == 1  # _check_cancel only
        n = len(tokens) - STEP_TOKENS
        engine.decode(tokens[STEP_TOKENS:], list(range(STEP_TOKENS, len(tokens))), [0] * n,
                      [False] * n)
        assert engine.cancel_event.reads > 10  # the callback, node by node
        engine.cancel_event.reads = 0
        engine.decode([tokens[0]], [len(tokens)], [0], [True])
        assert engine.cancel_event.reads == 1
        engine.cancel_event.set()
        engine.clear()
        monkeypatch.setattr(engine, "_check_cancel", lambda: None)  # only the C callback
        with pytest.raises(Cancelled):  # is back for long batches
            engine.decode(tokens, list(range(len(tokens))), [0] * len(tokens),
                          [False] * len(tokens))
    finally:
        engine.cancel_event = threading.Event()
        engine.clear()


def test_a_beam_wider_than_the_engine_allows_is_refused(engine):
    with pytest.raises(StagewiseError, match="n_seq_max"):
        StageSearch(LlamaBackend(engine), SearchSettings(beam=8))


def test_result_json_has_the_documented_shape(engine, image):
    _, result = run(engine, image, beam=2, select="judge", seed=9)
    data = result.to_json()
    assert set(data["stages"]) == {"summary", "caption", "reasoning", "conclusion"}
    assert all(len(data["candidates"][s]) == 2 for s in data["stages"])
    assert all(sum(c["chosen"] for c in data["candidates"][s]) == 1 for s in data["stages"])
    assert len(data["verdicts"]) == 4
    assert data["timings"]["image_encodes"] == 1
    assert data["timings"]["total_s"] > 0


def test_native_mode_asks_the_question_alone_and_never_breaks(engine, tmp_path, image):
    """A LLaVA-CoT fine-tune gets no instruction and writes its own tags."""
    from stagewise.models.build.tiny_vlm import TINY, write_tiny_pair
    from stagewise.models.events import PromptEvaluated
    from stagewise.models.inference.engine_settings import EngineSettings

    native = write_tiny_pair(tmp_path, TINY, stage_mode="native")
    with Engine(native.model, native.mmproj, EngineSettings(n_ctx=4096, n_seq_max=5)) as eng:
        assert eng.stage_mode.value == "native"
        # this random model never writes a tag: every strategy must still end
        for strategy in ("sentence", "best-of-n"):
            _, other = run(eng, image, strategy=strategy, beam=2, select="logprob")
            assert other.status == "finished"
        events, result = run(eng, image, beam=2, select="judge", seed=1)
    assert result.status == "finished" and result.mode == "native"
    assert all(c.finish in ("closed", "length", "eog") for c in result.candidates)
    prompted_events, _ = run(engine, image, beam=1)
    prompt_tokens = [next(e.n_tokens for e in evs if isinstance(e, PromptEvaluated))
                     for evs in (events, prompted_events)]
    assert prompt_tokens[0] < prompt_tokens[1]  # no instruction for a native model


def test_judge_prompts_skip_a_second_pass_over_the_image(engine, image, monkeypatch):
    """Their tokens after the image equal what libmtmd gives, without re-tokenizing it."""
    calls = []
    original = engine.tokenize_prompt
    monkeypatch.setattr(engine, "tokenize_prompt",
                        lambda *a, **k: calls.append(a) or original(*a, **k))
    search = StageSearch(LlamaBackend(engine),
                         SearchSettings(beam=2, select="judge", max_stage_tokens=6))
    assert isinstance(list(search.run(image, QUESTION))[-1], AnswerFinished)
    assert len(calls) == 1  # the question only
    text = engine.chat_prompt("Which response is better?\n\nResponse 1: a\n\nResponse 2: b")
    backend = search.backend
    backend.begin(image, QUESTION, search.mode, threading.Event())
    try:
        prefix = backend._image_prefix()
        fast = prefix.tail_after_image(text, ())
        prefix.before_image = None  # force libmtmd's own tokenization
        slow = prefix.tail_after_image(text, ())
    finally:
        backend.end()
    assert fast == slow


def test_after_a_winner_ends_its_turn_the_next_stage_reads_the_roots_logits(tmp_path, image,
                                                                           monkeypatch):
    """Native mode, beam 2, judge: a stage whose winner ended with end-of-generation left
    nothing to decode, and the next stage sampled from the last judge's logits."""
    import stagewise.models.reasoning.llama_backend as backend_module
    from stagewise.models.build.tiny_vlm import TINY, write_tiny_pair
    from stagewise.models.events import SegmentStarted
    from stagewise.models.inference.engine_settings import EngineSettings
    from stagewise.models.inference.sampling import Sampler

    native = write_tiny_pair(tmp_path, TINY, stage_mode="native")
    last_decode: list[list[int]] = [[]]
    seen: list[tuple[list[int], int]] = []  # (last decode's sequences, the root) per stage
    watch = {"armed": False}

    class Watched(Sampler):
        def sample(self, ctx, index):
            if watch["armed"]:
                watch["armed"] = False
                seen.append((last_decode[0], search.backend._root.seq))
            return super().sample(ctx, index)

    monkeypatch.setattr(backend_module, "Sampler", Watched)
    with Engine(native.model, native.mmproj, EngineSettings(n_ctx=4096, n_seq_max=5)) as eng:
        decode = eng.decode

        def recording(tokens, positions, seqs, logits):
            last_decode[0] = sorted(set(seqs))
            return decode(tokens, positions, seqs, logits)

        calls = {"n": 0}

        def every_third_ends(token):  # candidates end their turn after two tokens
            calls["n"] += 1
            return calls["n"] % 3 == 0

        monkeypatch.setattr(eng, "decode", recording)
        monkeypatch.setattr(eng, "is_eog", every_third_ends)
        search = StageSearch(LlamaBackend(eng),
                             SearchSettings(beam=2, select="judge", max_stage_tokens=8))
        for event in search.run(image, QUESTION):
            if isinstance(event, SegmentStarted) and event.segment > 0:
                watch["armed"] = True
    assert len(seen) == 3
    for seqs, root in seen:
        assert seqs == [root], "the stage sampled from logits that were not the root's"


def test_sentence_search_is_the_papers(engine, image, monkeypatch):
    """A sentence ends where the text ends in "."; the judge compares the new sentences
    alone, with the answer so far as the hint; there is no reasoning check."""
    from stagewise.models.reasoning import judge as judging

    asked = []
    original = judging.judge_text

    def recording(stage, question, first, second, hint="", *, sentence=False, **kw):
        asked.append((stage, first, second, hint, sentence))
        return original(stage, question, first, second, hint, sentence=sentence, **kw)

    monkeypatch.setattr(judging, "judge_text", recording)
    _, result = run(engine, image, strategy="sentence", beam=2, select="judge",
                         max_stage_tokens=24, seed=4)
    assert result.status == "finished" and not result.checks
    segments = [c for c in result.candidates if c.unit is None]
    assert segments and len(segments) == len(result.candidates)
    for c in segments:
        assert c.finish != "closed" or c.text.endswith(".") or Stage.CONCLUSION.close_tag in c.text
    assert asked and all(sentence and stage is None for stage, *_, sentence in asked)
    texts = {c.text.strip() for c in segments}
    for _, first, second, hint, _ in asked:
        assert first in texts and second in texts
        assert hint == "" or result.answer_text.startswith(hint)
