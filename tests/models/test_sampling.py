"""Sampler chains and the grammar's rejection sampling, through real llama.cpp."""

from __future__ import annotations

import numpy as np

from stagewise.models.inference.sampling import GREEDY, Sampler, SamplingSettings, mix_seed


def logits_after(engine, text: str) -> int:
    """Decode ``text`` on sequence 0 and return the batch position holding its logits."""
    engine.clear()
    return engine.eval_tokens([(0, 0, engine.tokenize(text))])[0]


def test_a_token_the_grammar_refuses_is_resampled_under_the_grammar(engine):
    index = logits_after(engine, "the image shows")
    wanted = engine.tokenize("Q")[0]
    assert int(np.argmax(engine.logits(index))) != wanted  # so the fast path must refuse
    for settings in (GREEDY, SamplingSettings()):
        sampler = Sampler(engine.vocab, settings, seed=1, grammar='root ::= "Q"')
        assert sampler.sample(engine.ctx, index) == wanted
        sampler.close()


def test_greedy_under_a_permissive_grammar_is_plain_greedy(engine):
    index = logits_after(engine, "two red circles")
    sampler = Sampler(engine.vocab, GREEDY, seed=0, grammar="root ::= [^\\x00]*")
    assert sampler.sample(engine.ctx, index) == int(np.argmax(engine.logits(index)))
    sampler.close()


def test_the_grammar_follows_accepted_tokens(engine):
    """After "a" the grammar 'a b' allows only "b"."""
    sampler = Sampler(engine.vocab, GREEDY, seed=0, grammar='root ::= "a" "b"')
    index = logits_after(engine, "x")
    assert engine.piece(sampler.sample(engine.ctx, index)) == b"a"
    assert engine.piece(sampler.sample(engine.ctx, index)) == b"b"
    sampler.close()


def test_seeds_differ_and_repeat(engine):
    index = logits_after(engine, "shapes")
    draws = {}
    for seed in range(6):
        s = Sampler(engine.vocab, SamplingSettings(temperature=1.5, top_p=1.0), seed)
        draws[seed] = s.sample(engine.ctx, index)
        again = Sampler(engine.vocab, SamplingSettings(temperature=1.5, top_p=1.0), seed)
        assert again.sample(engine.ctx, index) == draws[seed]
    assert len(set(draws.values())) > 1
    assert mix_seed(1, 2) != mix_seed(2, 1)
