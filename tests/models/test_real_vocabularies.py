"""The search on real tokenizers and chat templates: Qwen2's BPE, Llama 3's, Gemma 4's.

The pairs are random-weight models written on the vocabulary-only GGUFs and the templates
that llama-cpp-python's source distribution ships (:mod:`stagewise.models.recipes.real_vocab`); the
first run fetches that distribution and writes them into the cache folder. Qwen2's
vocabulary runs three times: on a ``llama`` text model with a LLaVA projector, and in
Qwen2.5-VL's and Qwen3-VL's own shapes (M-RoPE text models, their projectors and
templates).
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator

import numpy as np
import pytest
from llama_cpp import llama_cpp as lc

from stagewise.models.events import AnswerFinished, Event, PromptEvaluated, SearchResult
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.images import PreparedImage
from stagewise.models.inference.mtmd_prompt import Bitmap
from stagewise.models.inference.sampling import (
    _TOKEN_DATA,
    GREEDY,
    Sampler,
    SamplingSettings,
    _array_of,
)
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.llama_backend import LlamaBackend
from stagewise.models.reasoning.search import SearchSettings, StageSearch
from stagewise.models.reasoning.stage_grammar import answer_grammar
from stagewise.models.reasoning.strategies import sequences_needed
from stagewise.models.recipes.real_vocab import (
    REAL_VOCABULARIES,
    RealVocabulary,
    qwen_real_vocabulary_pair,
    real_vocabulary_pair,
)
from stagewise.models.stages import STAGES, Stage, user_text

QUESTION = "How many red circles are there?"


SHAPES = {"qwen2.5-vl shape": "qwen2.5-vl", "qwen3-vl shape": "qwen3-vl"}


@pytest.fixture(scope="module", params=[*sorted(REAL_VOCABULARIES), *SHAPES])
def case(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def vocab(case: str) -> RealVocabulary:
    return REAL_VOCABULARIES["qwen2" if case in SHAPES else case]


@pytest.fixture(scope="module")
def engine(case: str, vocab: RealVocabulary) -> Iterator[Engine]:
    pair = (qwen_real_vocabulary_pair(SHAPES[case]) if case in SHAPES
            else real_vocabulary_pair(vocab.name))
    settings = EngineSettings(n_ctx=4096, n_seq_max=sequences_needed(3), threads=2)
    with Engine(pair.model, pair.mmproj, settings) as loaded:
        yield loaded


def run(engine: Engine, image: PreparedImage, question: str = QUESTION,
        **settings: object) -> tuple[list[Event], SearchResult]:
    search = StageSearch(LlamaBackend(engine),
                         SearchSettings(**{"max_stage_tokens": 10, **settings}))
    events = list(search.run(image, question))
    assert isinstance(events[-1], AnswerFinished)
    return events, events[-1].result


def test_the_pair_has_the_real_vocabulary_and_template(engine: Engine, vocab: RealVocabulary,
                                                       case: str):
    assert engine.n_vocab > 100_000
    assert engine.family == SHAPES.get(case, vocab.family)
    assert engine.uses_mrope == (case in SHAPES)
    prompt = engine.chat_prompt("Hi?")
    assert prompt.count(engine.media_marker) == 1
    assert vocab.end_of_turn in prompt
    assert len(engine.tokenize("<SUMMARY>")) > 1  # the tags are plain text here


def test_the_end_of_turn_token_ends_generation(engine: Engine, vocab: RealVocabulary):
    ids = engine.tokenize(vocab.end_of_turn)
    assert len(ids) == 1 and engine.is_eog(ids[0])
    for text in engine.stop_texts:  # the family's own list, where it has one
        assert engine.is_eog(engine.tokenize(text)[0])


def test_the_family_end_of_turn_texts_are_used(engine: Engine):
    plain = engine.tokenize("a")[0]
    assert not engine.is_eog(plain)
    engine.tokenizer.turn_end = frozenset({plain})  # as if the family ended its turns with "a"
    try:
        assert engine.is_eog(plain)
    finally:
        engine.tokenizer.turn_end = engine.tokenizer.turn_end_tokens(engine.stop_texts)


@pytest.mark.parametrize(("strategy", "beam", "select"), [
    ("stage", 1, "logprob"),
    ("stage", 3, "logprob"),
    ("stage", 2, "judge"),
    ("sentence", 2, "logprob"),
    ("best-of-n", 2, "judge"),
])
def test_prompted_search_gives_four_stages(engine: Engine, image: PreparedImage,
                                           strategy: str, beam: int, select: str):
    _, result = run(engine, image, strategy=strategy, beam=beam, select=select, seed=2)
    assert result.status == "finished"
    for stage in STAGES:
        assert result.stages[stage].strip(), (stage, result.answer_text)
        assert result.answer_text.count(stage.open_tag) == 1
        assert result.answer_text.count(stage.close_tag) == 1
    if select == "judge":
        assert result.verdicts
        for verdict in result.verdicts:
            assert verdict.winner in (verdict.first, verdict.second)
            assert verdict.unread or verdict.reason


@pytest.mark.parametrize(("strategy", "select"), [
    ("stage", "judge"), ("sentence", "logprob"), ("best-of-n", "logprob")])
def test_native_search_runs_to_the_end(engine: Engine, image: PreparedImage, strategy: str,
                                       select: str):
    _, result = run(engine, image, strategy=strategy, beam=2, select=select,
                    mode=StageMode.NATIVE)
    assert result.status == "finished" and result.mode == "native"
    assert all(c.finish in ("closed", "length", "eog") for c in result.candidates)


def test_control_text_in_the_question_stays_text(engine: Engine, image: PreparedImage,
                                                 vocab: RealVocabulary):
    question = (f"Is {vocab.end_of_turn} a token? Say <CONCLUSION> or <start_of_turn> "
                "then <|im_end|>.")
    text = engine.chat_prompt(user_text(question, StageMode.PROMPTED))
    turn_end = engine.tokenize(vocab.end_of_turn)[0]
    with Bitmap(image) as bitmap:
        naive = engine.tokenize_prompt(text, bitmap)
        guarded = engine.tokenize_prompt(text, bitmap, (question,))
    try:
        assert naive.tail_tokens().count(turn_end) >= 2  # the question would end the turn
        assert guarded.tail_tokens().count(turn_end) == 1  # only the template's own does
        asked = engine.tokenize(question, special=False)
        tail = guarded.tail_tokens()
        assert any(tail[i:i + len(asked)] == asked for i in range(len(tail)))
    finally:
        naive.close()
        guarded.close()
    events, result = run(engine, image, question, beam=2, select="judge")
    assert result.status == "finished"
    assert all(result.stages[stage].strip() for stage in STAGES)
    evaluated = next(e for e in events if isinstance(e, PromptEvaluated))
    assert evaluated.n_tokens == guarded.n_tokens


def test_tags_of_several_tokens_are_found_piece_by_piece(engine: Engine):
    """As the search reads a stream: the close tag is seen in the newest piece's window
    when its last token arrives, and the detokenized answer parses into its stages."""
    from stagewise.models.stages import TAG_WINDOW, parse_answer, stage_end

    answer = "".join(f"{s.open_tag} The {s.value} here. {s.close_tag}\n" for s in STAGES)
    for stage in STAGES:
        text = f"{stage.open_tag} The {stage.value} here. {stage.close_tag}"
        tokens = engine.tokenize(text, special=False)
        assert len(tokens) > 4
        seen_at, so_far = None, ""
        for i, token in enumerate(tokens):
            piece = engine.piece(token).decode("utf-8")
            so_far += piece
            if seen_at is None and stage_end(so_far[-(len(piece) + TAG_WINDOW):],
                                             stage) is not None:
                seen_at = i
        assert seen_at == len(tokens) - 1
    detokenized = b"".join(engine.piece(t) for t in engine.tokenize(answer, special=False))
    parsed = parse_answer(detokenized.decode("utf-8"))
    assert parsed.complete
    assert parsed.stages[STAGES[0]] == f"The {STAGES[0].value} here."


def _full_grammar_draw(engine: Engine, sampler: Sampler, index: int) -> tuple[int, bool]:
    """What llama.cpp's plain path draws: the grammar over the whole vocabulary, then the
    chain, both cloned from ``sampler`` (so the same random state); and whether the
    grammar allows every token the chain alone keeps (after top-k and top-p)."""
    n = engine.n_vocab
    chain, grammar = lc.llama_sampler_clone(sampler._chain), lc.llama_sampler_clone(
        sampler._grammar)
    keep = lc.llama_sampler_clone(sampler._chain)
    try:
        logits = engine.logits(index)
        full = np.zeros(n, _TOKEN_DATA)
        full["id"], full["logit"] = np.arange(n, dtype=np.int32), logits
        array = _array_of(full)
        lc.llama_sampler_apply(grammar, ctypes.byref(array))
        lc.llama_sampler_apply(chain, ctypes.byref(array))
        drawn = int(full["id"][array.selected])
        free = np.zeros(n, _TOKEN_DATA)
        free["id"], free["logit"] = np.arange(n, dtype=np.int32), logits
        array = _array_of(free)
        lc.llama_sampler_apply(keep, ctypes.byref(array))
        kept = free[: array.size].copy()
        kept_array = _array_of(kept)
        lc.llama_sampler_apply(grammar, ctypes.byref(kept_array))  # refused: -inf
        return drawn, bool(np.isfinite(kept["logit"]).all())
    finally:
        for handle in (chain, grammar, keep):
            lc.llama_sampler_free(handle)


@pytest.mark.parametrize("settings", [GREEDY, SamplingSettings()], ids=["greedy", "seeded"])
def test_the_lazy_grammar_draws_what_the_grammar_first_chain_draws(
        engine: Engine, settings: SamplingSettings):
    """:class:`Sampler` checks only the drawn token against the stage grammar and applies
    the grammar to the whole (real) vocabulary only when it refuses it. Step by step,
    against a grammar-first chain in the same state: greedy always picks the same token;
    a seeded draw picks the same token whenever the grammar refuses none of the tokens
    top-k and top-p keep (otherwise both are tokens the grammar allows)."""
    engine.clear()
    prompt = engine.tokenize(engine.chat_prompt(user_text(QUESTION, StageMode.PROMPTED),
                                                with_image=False) + "<SUMMARY>")
    index = engine.eval_tokens([(0, 0, prompt)])[0]
    sampler = Sampler(engine.vocab, settings, seed=7,
                      grammar=answer_grammar(Stage.SUMMARY, opened=True))
    same = compared = 0
    try:
        for pos in range(len(prompt), len(prompt) + 40):
            expected, unrefused = _full_grammar_draw(engine, sampler, index)
            token = sampler.sample(engine.ctx, index)
            if settings.greedy or unrefused:
                assert token == expected, f"step {pos - len(prompt)}"
                same += 1
            compared += 1
            if engine.is_eog(token):
                break
            engine.decode([token], [pos], [0], [True])
            index = 0
    finally:
        sampler.close()
        engine.clear()
    assert same >= compared // 2 > 0
