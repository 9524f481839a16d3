"""The ``prm`` selection on a random-weight process-reward-model-shaped pair: Qwen2.5-VL's
shape (VL-PRM's base) on Qwen2's real tokenizer and chat template, where "+" and "-" are
looked up, not assumed; and the PRM's prompt in VL-PRM's format."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stagewise.models.build.tiny_vlm import TinyPair
from stagewise.models.errors import StagewiseError
from stagewise.models.events import AnswerFinished
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.images import PreparedImage
from stagewise.models.reasoning.prm_verifier import (
    VL_PRM_SYSTEM,
    PrmVerifier,
    prm_steps,
    step_turns,
)
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.session import Session, plan
from stagewise.models.stages import Stage

pytest.importorskip("torch")  # the recipe builds the Qwen2.5-VL shape with transformers

QUESTION = "How many red circles are there?"


@pytest.fixture(scope="module")
def prm_pair() -> TinyPair:
    from stagewise.models.recipes.real_vocab import qwen_real_vocabulary_pair

    return qwen_real_vocabulary_pair("qwen2.5-vl")


@pytest.fixture(scope="module")
def prm(prm_pair: TinyPair) -> Iterator[PrmVerifier]:
    with Engine(prm_pair.model, prm_pair.mmproj,
                EngineSettings(n_ctx=4096, n_seq_max=2, threads=2)) as engine:
        yield PrmVerifier(engine)


def test_the_answer_tokens_are_the_real_plus_and_minus(prm):
    engine = prm.engine
    assert prm.good != prm.bad
    assert engine.piece(prm.good) == b"+" and engine.piece(prm.bad) == b"-"
    assert (prm.good, prm.bad) == (10, 12)  # Qwen2's byte-level BPE, as the facts say


def test_the_prompt_is_vl_prms_format(prm):
    turns = step_turns(QUESTION, ["I count the circles.", "There are three.", "3"])
    text = prm._render(turns)
    assert VL_PRM_SYSTEM in text
    assert text.count("<|im_start|>user") == 3
    assert f"### Question:\n{QUESTION}\n\n### Solution Process:\nI count the circles." in text
    assert text.count("<|im_start|>assistant\n+<|im_end|>") == 2  # earlier steps: "+"
    assert text.endswith("<|im_start|>assistant\n")  # the newest step is asked
    assert text.index(prm.engine.media_marker) < text.index("### Question:")


def test_steps_are_the_stages_chosen_before_and_the_candidate():
    so_far = "<SUMMARY>Count.</SUMMARY>\n\n<CAPTION>Three red circles.</CAPTION>"
    assert prm_steps(Stage.REASONING, so_far, "So 3.") == (
        ["Count.", "Three red circles.", "So 3."], True)
    whole = ("<SUMMARY>Count.</SUMMARY><CAPTION>Red.</CAPTION><REASONING>So.</REASONING>"
             "<CONCLUSION>3</CONCLUSION>")
    assert prm_steps(None, "", whole) == (["Count.", "Red.", "So.", "3"], False)


def test_scores_are_probabilities_from_one_image_encode(prm, image: PreparedImage):
    encodes = prm.engine.stats.image_encodes
    prm.start(image, QUESTION)
    try:
        first = prm.score(Stage.CAPTION, "<SUMMARY>Count.</SUMMARY>",
                          ["Three red circles.", "Two blue squares."])
        whole = prm.score(None, "", ["<SUMMARY>Count.</SUMMARY><CONCLUSION>3</CONCLUSION>"])
        again = prm.score(Stage.CAPTION, "<SUMMARY>Count.</SUMMARY>", ["Three red circles."])
    finally:
        prm.finish()
    assert prm.engine.stats.image_encodes - encodes == 1
    assert all(0.0 < s < 1.0 for s in [*first, *whole])
    assert first[0] != first[1]
    assert again[0] == pytest.approx(first[0], abs=1e-5)  # the cached image is not disturbed


def test_the_prm_selection_chooses_in_a_search(tiny_pair: TinyPair, prm_pair: TinyPair,
                                               image: PreparedImage):
    settings = SearchSettings(beam=2, select="prm", scorer_model=prm_pair.model,
                              max_stage_tokens=10, seed=3)
    with Session(plan(tiny_pair.model, tiny_pair.mmproj,
                      EngineSettings(n_ctx=4096, threads=2))) as session:
        events = list(session.ask(image, QUESTION, settings))
        best_of_n = list(session.ask(image, QUESTION,
                                     SearchSettings(**{**settings.__dict__,
                                                       "strategy": "best-of-n"})))
    for run in (events, best_of_n):
        result = run[-1].result
        assert isinstance(run[-1], AnswerFinished) and result.status == "finished"
        assert result.select == "prm"
        assert all(c.score is not None and 0.0 < c.score < 1.0 for c in result.candidates)
        for segment, winner in result.chosen:
            scores = [c.score for c in result.candidates if c.segment == segment]
            assert scores[winner] == max(scores)


def test_a_model_without_single_plus_and_minus_tokens_is_not_a_prm(tiny_pair: TinyPair,
                                                                   monkeypatch):
    """A vocabulary that spells "+" with two tokens (as a SentencePiece one may, "▁" and
    "+") cannot answer as a PRM: refused in one line, before any question."""
    with Engine(tiny_pair.model, tiny_pair.mmproj,
                EngineSettings(n_ctx=2048, n_seq_max=2, threads=2)) as engine:
        assert PrmVerifier(engine).good  # this vocabulary has both
        real = engine.tokenize
        monkeypatch.setattr(engine, "tokenize", lambda text, **kw: (
            [*real(" ", **kw), *real(text, **kw)] if text == "+" else real(text, **kw)))
        with pytest.raises(StagewiseError, match="not a PRM"):
            PrmVerifier(engine)
