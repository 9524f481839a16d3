"""Sampler chains: one per candidate sequence, each with its own seed and grammar."""

from __future__ import annotations

import ctypes

import numpy as np
from llama_cpp import llama_cpp as lc

from stagewise.models.errors import EngineError
from stagewise.models.inference.sampling_settings import GREEDY, SamplingSettings, mix_seed

__all__ = ["GREEDY", "Sampler", "SamplingSettings", "mix_seed"]

_TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])  # llama_token_data


class Sampler:
    """A llama.cpp sampler chain and optional grammar, owned by Python.

    A grammar is checked the way llama.cpp's own common sampler does it: the chain samples
    from the whole vocabulary, only that one token is checked against the grammar, and
    the grammar is applied to the whole vocabulary only when the token is refused. Applying
    it to every token of a 150k vocabulary at every step costs milliseconds; the result
    has the same distribution.
    """

    def __init__(
        self,
        vocab: lc.llama_vocab_p,
        settings: SamplingSettings,
        seed: int,
        grammar: str | None = None,
    ) -> None:
        self._grammar = None
        self._chain = _chain(settings, seed)
        self._n_vocab = lc.llama_vocab_n_tokens(vocab)
        self._one = np.zeros(1, _TOKEN_DATA)
        self._all: np.ndarray | None = None  # whole-vocabulary buffer, made on first need
        if grammar is not None:
            self._grammar = lc.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
            if not self._grammar:
                self.close()
                raise EngineError("llama.cpp rejected the grammar")

    def sample(self, ctx: lc.llama_context_p, index: int) -> int:
        """Sample (and accept) a token from the logits of batch position ``index``."""
        token = int(lc.llama_sampler_sample(self._chain, ctx, index))
        if self._grammar is None:
            return token
        if not self._allowed(token):
            token = self._sample_constrained(ctx, index)
        lc.llama_sampler_accept(self._grammar, token)
        return token

    def _allowed(self, token: int) -> bool:
        one = self._one
        one["id"][0], one["logit"][0], one["p"][0] = token, 1.0, 0.0
        lc.llama_sampler_apply(self._grammar, ctypes.byref(_array_of(one)))
        return bool(np.isfinite(one["logit"][0]))

    def _sample_constrained(self, ctx: lc.llama_context_p, index: int) -> int:
        """Grammar first over the whole vocabulary, then the chain."""
        if self._all is None:
            self._all = np.zeros(self._n_vocab, _TOKEN_DATA)
        data = self._all
        logits = lc.llama_get_logits_ith(ctx, index)
        data["id"] = np.arange(self._n_vocab, dtype=np.int32)
        data["logit"] = np.ctypeslib.as_array(logits, shape=(self._n_vocab,))
        data["p"] = 0.0
        array = _array_of(data)
        lc.llama_sampler_apply(self._grammar, ctypes.byref(array))
        lc.llama_sampler_apply(self._chain, ctypes.byref(array))
        if not 0 <= array.selected < array.size:
            raise EngineError("the grammar allows no token here")
        return int(data["id"][array.selected])

    def close(self) -> None:
        for name in ("_chain", "_grammar"):
            handle = getattr(self, name, None)
            if handle:
                lc.llama_sampler_free(handle)
            setattr(self, name, None)

    def __del__(self) -> None:
        self.close()


def _chain(settings: SamplingSettings, seed: int) -> lc.llama_sampler_p:
    params = lc.llama_sampler_chain_default_params()
    params.no_perf = True
    chain = lc.llama_sampler_chain_init(params)
    if not chain:
        raise EngineError("llama.cpp could not create a sampler chain")
    if settings.greedy:
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
        return chain
    # Hugging Face generate's order (the reference code's): top-k, temperature, then top-p
    # and min-p on the tempered distribution. Top-k first also keeps the work per token
    # small: top-p over a whole 152k vocabulary sorts it at every step.
    if settings.top_k > 0:
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_k(settings.top_k))
    lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_temp(settings.temperature))
    if settings.top_p < 1.0:
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_p(settings.top_p, 1))
    if settings.min_p > 0.0:
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_min_p(settings.min_p, 1))
    lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


def _array_of(data: np.ndarray) -> lc.llama_token_data_array:
    return lc.llama_token_data_array(
        data=data.ctypes.data_as(lc.llama_token_data_p), size=len(data), selected=-1,
        sorted=False,
    )
