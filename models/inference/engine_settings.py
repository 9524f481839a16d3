"""How a model is loaded, and what an engine counts; importable without llama.cpp."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from stagewise.models.bounds import IntRange
from stagewise.models.errors import StagewiseError

__all__ = ["AUTO_CTX", "FALLBACK_CTX", "FLASH_ATTENTION", "GPU_LAYERS", "N_BATCH", "N_CTX",
           "N_SEQ_MAX", "PREFIX_CACHE", "PREFIX_CACHE_MIB", "THREADS", "EngineSettings",
           "EngineStats", "FlashAttention", "default_threads"]

FlashAttention = Literal["auto", "on", "off"]
FLASH_ATTENTION: tuple[FlashAttention, ...] = ("auto", "on", "off")

AUTO_CTX = 0
"""A context size of 0 asks for one sized to the model and the search. Only a load plan
resolves it (:func:`stagewise.models.session.plan`): the model's trained context, at most
:data:`FALLBACK_CTX`, or more when the search needs more
(:func:`stagewise.models.hardware.need.choose_context`); an engine refuses it."""

FALLBACK_CTX = 8192
"""The automatic context's ceiling when the search needs no more."""

N_CTX = IntRange("n_ctx", 256, 131072, special=((AUTO_CTX, "automatic"),))
"""The context size. The floor is llama.cpp's own unit: it pads every context to a multiple
of 256 cells (and aborts the process below 64), so 256 is the smallest context it
allocates. Whether a context is large enough for a question depends on the model's image
tokens and the search's stage budget, not on a fixed number: the load plan warns when the
search needs more, and the engine refuses a prompt that does not fit, each with the size
it needs. The ceiling is the longest context common models are trained for."""

N_BATCH = IntRange("n_batch", 1, N_CTX.high)
"""Tokens one decode call takes."""

N_SEQ_MAX = IntRange("n_seq_max", 1, 256)
"""Sequences in one context; 256 is llama.cpp's ``LLAMA_MAX_SEQ``
(``llama_max_parallel_sequences()``)."""

THREADS = IntRange("threads", 1, 256, optional="automatic")
"""CPU threads; None picks :func:`default_threads`."""

GPU_LAYERS = IntRange("gpu_layers", -1, 999, note="-1 auto, 0 CPU only")
"""Layers offloaded to the GPU; 999 is more than any model has (llama.cpp clamps it)."""


IMAGE_TOKENS = IntRange("image_tokens", 1, 16384, special=((0, "the model's own"),))
"""Most tokens one image may take, for families whose token count follows the image's size
(Qwen-VL); 0 keeps the family's own cap. Each family clamps it to what its encoder takes
(:meth:`~stagewise.models.inference.families.base.FamilyAdapter.image_token_cap`)."""


PREFIX_CACHE_MIB = 2048
"""The default cap of the encoded-image cache on disk
(:mod:`stagewise.models.inference.prefix_cache`): a few dozen images of a 3-4 B model."""

PREFIX_CACHE = IntRange("prefix_cache_mib", 0, 1 << 20, note="0 keeps no encoded images")
"""MiB the encoded-image cache may take on disk; 1 TiB at most."""


def default_threads() -> int:
    """Threads for generation: every core on small machines, half of them on large ones."""
    cores = os.cpu_count() or 1
    return cores if cores <= 4 else cores // 2


@dataclass(frozen=True)
class EngineSettings:
    """How a model is loaded.

    Attributes:
        n_ctx: Context size in tokens (:data:`N_CTX`), shared by all sequences (unified KV
            cache); :data:`AUTO_CTX` (0) asks a load plan to size it to the model and the
            search.
        n_batch: Largest number of tokens handed to one decode call.
        n_seq_max: Most sequences alive at once (beam width, judges, the prefix).
        threads: CPU threads; ``None`` picks :func:`default_threads`.
        gpu_layers: Layers offloaded to the GPU: -1 all, 0 none. CPU builds ignore it.
        flash_attn: Flash attention: "auto", "on" or "off".
        allow_amx: Let llama.cpp put weights in its AMX buffer type where it offers one;
            off by default (:mod:`stagewise.models.inference.cpu_buffers` says why).
        image_tokens: Most tokens one image may take (:data:`IMAGE_TOKENS`; 0: the
            family's own cap): a larger image is downscaled, its aspect kept, before
            libmtmd sees it. Only families whose token count follows the image's size
            use it; the others take every image at one size.
    """

    n_ctx: int = AUTO_CTX
    n_batch: int = 512
    n_seq_max: int = 16
    threads: int | None = None
    gpu_layers: int = -1
    flash_attn: FlashAttention = "auto"
    allow_amx: bool = False
    image_tokens: int = 0

    def validate(self) -> None:
        """Checks every value against its range (:data:`N_CTX`, :data:`THREADS`, ...).

        Raises:
            StagewiseError: A value is out of range or of the wrong type; the message names
                the setting and the allowed values.
        """
        for bound, value in ((N_CTX, self.n_ctx), (N_BATCH, self.n_batch),
                             (N_SEQ_MAX, self.n_seq_max), (THREADS, self.threads),
                             (GPU_LAYERS, self.gpu_layers), (IMAGE_TOKENS, self.image_tokens)):
            bound.check(value)
        if self.flash_attn not in FLASH_ATTENTION:
            raise StagewiseError(f"flash_attn must be one of {', '.join(FLASH_ATTENTION)}, "
                                 f"not {self.flash_attn!r}")
        if not isinstance(self.allow_amx, bool):
            raise StagewiseError(f"allow_amx must be true or false, not {self.allow_amx!r}")


@dataclass
class EngineStats:
    """Counters since the engine was created; the search reads differences."""

    image_encodes: int = 0
    prompt_tokens: int = 0
    decode_calls: int = 0
    decoded_tokens: int = 0
    encode_s: float = 0.0  # seconds spent evaluating prompts up to their image's end
