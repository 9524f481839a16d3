"""How a model is loaded, and what an engine counts; importable without llama.cpp."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

__all__ = ["AUTO_CTX", "FALLBACK_CTX", "FLASH_ATTENTION", "PREFIX_CACHE_MIB", "EngineSettings",
           "EngineStats", "FlashAttention", "default_threads"]

FlashAttention = Literal["auto", "on", "off"]
FLASH_ATTENTION: tuple[FlashAttention, ...] = ("auto", "on", "off")

AUTO_CTX = 0
"""A context size of 0 asks for one sized to the model and the search: a load plan picks
the model's trained context, at most :data:`FALLBACK_CTX`, or more when the search needs
more (:func:`stagewise.models.hardware.need.choose_context`)."""

FALLBACK_CTX = 8192
"""The automatic context's ceiling, and the context of an engine made without a plan."""


PREFIX_CACHE_MIB = 2048
"""The default cap of the encoded-image cache on disk
(:mod:`stagewise.models.inference.prefix_cache`): a few dozen images of a 3-4 B model."""


def default_threads() -> int:
    """Threads for generation: every core on small machines, half of them on large ones."""
    cores = os.cpu_count() or 1
    return cores if cores <= 4 else cores // 2


@dataclass(frozen=True)
class EngineSettings:
    """How a model is loaded.

    Attributes:
        n_ctx: Context size in tokens, shared by all sequences (unified KV cache);
            :data:`AUTO_CTX` (0) sizes it to the model and the search.
        n_batch: Largest number of tokens handed to one decode call.
        n_seq_max: Most sequences alive at once (beam width, judges, the prefix).
        threads: CPU threads; ``None`` picks :func:`default_threads`.
        gpu_layers: Layers offloaded to the GPU: -1 all, 0 none. CPU builds ignore it.
        flash_attn: Flash attention: "auto", "on" or "off".
        allow_amx: Let llama.cpp put weights in its AMX buffer type where it offers one;
            off by default (:mod:`stagewise.models.inference.cpu_buffers` says why).
    """

    n_ctx: int = AUTO_CTX
    n_batch: int = 512
    n_seq_max: int = 16
    threads: int | None = None
    gpu_layers: int = -1
    flash_attn: FlashAttention = "auto"
    allow_amx: bool = False


@dataclass
class EngineStats:
    """Counters since the engine was created; the search reads differences."""

    image_encodes: int = 0
    prompt_tokens: int = 0
    decode_calls: int = 0
    decoded_tokens: int = 0
    encode_s: float = 0.0  # seconds spent evaluating prompts up to their image's end
