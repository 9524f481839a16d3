"""Sampler chains: one per candidate sequence, each with its own seed and grammar."""

from __future__ import annotations

from llama_cpp import llama_cpp as lc

from models.errors import EngineError
from models.sampling_settings import GREEDY, SamplingSettings

__all__ = ["GREEDY", "Sampler", "SamplingSettings", "mix_seed"]


class Sampler:
    """A llama.cpp sampler chain owned by Python; call :meth:`close` (or rely on GC)."""

    def __init__(
        self,
        vocab: lc.llama_vocab_p,
        settings: SamplingSettings,
        seed: int,
        grammar: str | None = None,
    ) -> None:
        params = lc.llama_sampler_chain_default_params()
        params.no_perf = True
        self._chain = lc.llama_sampler_chain_init(params)
        if not self._chain:
            raise EngineError("llama.cpp could not create a sampler chain")
        if grammar is not None:
            rule = lc.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
            if not rule:
                self.close()
                raise EngineError("llama.cpp rejected the stage grammar")
            lc.llama_sampler_chain_add(self._chain, rule)
        if settings.greedy:
            lc.llama_sampler_chain_add(self._chain, lc.llama_sampler_init_greedy())
            return
        if settings.top_k > 0:
            lc.llama_sampler_chain_add(self._chain, lc.llama_sampler_init_top_k(settings.top_k))
        if settings.top_p < 1.0:
            lc.llama_sampler_chain_add(self._chain, lc.llama_sampler_init_top_p(settings.top_p, 1))
        if settings.min_p > 0.0:
            lc.llama_sampler_chain_add(self._chain, lc.llama_sampler_init_min_p(settings.min_p, 1))
        lc.llama_sampler_chain_add(self._chain, lc.llama_sampler_init_temp(settings.temperature))
        lc.llama_sampler_chain_add(self._chain, lc.llama_sampler_init_dist(seed & 0xFFFFFFFF))

    def sample(self, ctx: lc.llama_context_p, index: int) -> int:
        """Sample (and accept) a token from the logits at batch output ``index``."""
        return int(lc.llama_sampler_sample(self._chain, ctx, index))

    def close(self) -> None:
        if self._chain:
            lc.llama_sampler_free(self._chain)
            self._chain = None

    def __del__(self) -> None:
        self.close()


def mix_seed(*parts: int) -> int:
    """Derive a 32-bit seed from several integers (stable across runs and platforms)."""
    h = 0x811C9DC5
    for part in parts:
        for byte in int(part).to_bytes(8, "little", signed=True):
            h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h
