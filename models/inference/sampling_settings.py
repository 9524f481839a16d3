"""How candidates pick tokens, and their seeds; importable without loading llama.cpp."""

from __future__ import annotations

from dataclasses import dataclass

from stagewise.models.bounds import FloatRange, IntRange

TEMPERATURE = FloatRange("temperature", 0.0, 2.0)
"""Softmax temperature; 0 is greedy."""

TOP_P = FloatRange("top_p", 0.0, 1.0)
"""Nucleus sampling mass; 1 turns it off."""

TOP_K = IntRange("top_k", 0, 2**31 - 1, note="0 turns it off")
"""Most likely tokens kept; any int32 (llama.cpp's type) goes."""

MIN_P = FloatRange("min_p", 0.0, 1.0)
"""Share of the best token's probability below which tokens are dropped."""


@dataclass(frozen=True)
class SamplingSettings:
    """How one candidate picks its tokens.

    Attributes:
        temperature: Softmax temperature (:data:`TEMPERATURE`); 0 means greedy.
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

    def validate(self) -> None:
        """Checks every value against its range (:data:`TEMPERATURE`, :data:`TOP_P`, ...).

        Raises:
            StagewiseError: A value is out of range or of the wrong type; the message names
                the setting and the allowed values.
        """
        for bound, value in ((TEMPERATURE, self.temperature), (TOP_P, self.top_p),
                             (TOP_K, self.top_k), (MIN_P, self.min_p)):
            bound.check(value)


GREEDY = SamplingSettings(temperature=0.0, top_p=1.0)


def mix_seed(*parts: int) -> int:
    """Derive a 32-bit seed from several integers (stable across runs and platforms)."""
    h = 0x811C9DC5
    for part in parts:
        for byte in int(part).to_bytes(8, "little", signed=True):
            h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h
