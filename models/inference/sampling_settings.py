"""How candidates pick tokens, and their seeds; importable without loading llama.cpp."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingSettings:
    """How one candidate picks its tokens.

    Attributes:
        temperature: Softmax temperature; 0 or less means greedy.
        top_p: Nucleus sampling mass, over the distribution after temperature; 1.0 turns
            it off.
        top_k: Keep the k most likely tokens first; 0 turns it off. 50 is Hugging Face
            ``generate``'s default, which the LLaVA-CoT reference code samples with.
        min_p: Drop tokens below this fraction of the best one; 0 turns it off.
    """

    temperature: float = 0.6
    top_p: float = 0.9
    top_k: int = 50
    min_p: float = 0.0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


GREEDY = SamplingSettings(temperature=0.0, top_p=1.0)


def mix_seed(*parts: int) -> int:
    """Derive a 32-bit seed from several integers (stable across runs and platforms)."""
    h = 0x811C9DC5
    for part in parts:
        for byte in int(part).to_bytes(8, "little", signed=True):
            h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h
