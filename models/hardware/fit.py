"""Whether a need fits this computer, and where: GPU, GPU and RAM, RAM, or nowhere.

:func:`plan_fit` decides where a :class:`~stagewise.models.hardware.need.Need` goes: all on the GPU,
some layers on the GPU and the rest in RAM, in RAM only, or nowhere, and when nowhere it
says what would fit (a smaller quantization of the same model, a smaller context).
:func:`check_fit` chains detection, estimate and plan for the engine's and the search's
settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from stagewise.models.hardware.devices import GiB, Hardware, detect_hardware
from stagewise.models.hardware.image_need import capped_image_tokens
from stagewise.models.hardware.need import CTX_PAD, Need, _text_compute, estimate_need
from stagewise.models.reasoning.search_sizes import DEFAULT_PROMPT_TOKENS

if TYPE_CHECKING:
    from stagewise.models.inference.engine_settings import EngineSettings
    from stagewise.models.reasoning.search_settings import SearchSettings

__all__ = [
    "QUANT_BITS_PER_WEIGHT",
    "Fit",
    "Where",
    "check_fit",
    "plan_fit",
]

Where = Literal["gpu", "gpu+cpu", "cpu", "none"]

# Llama-3-8B's parameter count and the file sizes (GiB) of its quantizations, from the
# QUANT_OPTIONS table of llama.cpp's tools/quantize/quantize.cpp ("7.96G, +0.0026 ppl @
# Llama-3-8B" and so on). Mixed quantizations keep some tensors (output, token embeddings,
# attention V) at a higher type, so whole-file sizes give the honest bits per weight.
_LLAMA3_8B_PARAMS = 8_030_261_248
_LLAMA3_8B_GIB = {
    "Q8_0": 7.96,
    "Q6_K": 6.14,
    "Q5_K_M": 5.33,
    "Q4_K_M": 4.58,
    "Q3_K_M": 3.74,
    "Q2_K": 2.96,
}
QUANT_BITS_PER_WEIGHT: Mapping[str, float] = {
    name: gib * GiB * 8 / _LLAMA3_8B_PARAMS for name, gib in _LLAMA3_8B_GIB.items()
}
"""Bits per weight of whole files, largest first: Q8_0 8.52, Q6_K 6.57, Q5_K_M 5.70,
Q4_K_M 4.90, Q3_K_M 4.00, Q2_K 3.17."""


@dataclass(frozen=True)
class Fit:
    """Where a load goes, or why it cannot.

    Attributes:
        fits: Whether the load fits in memory.
        gpu_layers: Layers to offload (EngineSettings.gpu_layers): -1 all, 0 none.
        where: "gpu" (all on the GPU), "gpu+cpu" (split), "cpu" or "none".
        message: One sentence for the user.
        recommended_quant: The largest of Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q3_K_M, Q2_K whose
            file of this model would fit here; None if none would or the size is unknown.
        warnings: The need's warnings (context too small, ...).
        need: The need that was planned.
    """

    fits: bool
    gpu_layers: int
    where: str
    message: str
    recommended_quant: str | None
    warnings: tuple[str, ...] = ()
    need: Need | None = field(default=None, repr=False)


def _size(n: int) -> str:
    if n >= 10**9:
        return f"{n / 10**9:.1f} GB"
    return f"{max(n, 0) / 10**6:.0f} MB"


@dataclass(frozen=True)
class _Layout:
    fits: bool
    gpu_layers: int
    where: Where
    gpu_bytes: int
    ram_bytes: int


def _layout(need: Need, hw: Hardware, n_layer: int, gpu_layers: int) -> _Layout:
    """Places the load: on the GPU, split, or in RAM (see :func:`plan_fit`)."""
    ram, vram = hw.usable_ram, hw.usable_vram
    n_layer = max(1, n_layer)
    text_compute = _text_compute(need.detail, need.n_ctx) if need.detail else need.compute
    fixed_gpu = need.compute + need.projector  # compute buffers (text, image) and projector
    per_layer = (need.weights + need.kv_cache) / n_layer

    def cpu() -> _Layout:
        return _Layout(need.total <= ram, 0, "cpu", 0, need.total)

    def split(k: int) -> _Layout:
        if k >= n_layer:
            gpu_bytes, ram_bytes = need.total, need.total if hw.unified_memory else 0
            return _Layout(gpu_bytes <= vram and ram_bytes <= ram, -1, "gpu", gpu_bytes,
                           ram_bytes)
        gpu_bytes = int(fixed_gpu + k * per_layer)
        # the layers left on the CPU, and a host compute buffer for them
        ram_bytes = (need.total if hw.unified_memory
                     else int((n_layer - k) * per_layer) + text_compute)
        return _Layout(gpu_bytes <= vram and ram_bytes <= ram, k, "gpu+cpu", gpu_bytes,
                       ram_bytes)

    if not hw.gpu_offload or not hw.gpus or gpu_layers == 0:
        return cpu()
    if gpu_layers > 0:
        return split(min(gpu_layers, n_layer))
    whole = split(n_layer)
    if whole.fits:
        return whole
    k = int((vram - fixed_gpu) // per_layer) if per_layer > 0 and vram > fixed_gpu else 0
    k = min(k, n_layer - 1)
    if k >= 1:
        layout = split(k)
        if layout.fits:
            return layout
    return cpu()


def _capacity(hw: Hardware) -> int:
    """Memory a load can use, for messages: RAM, plus VRAM where it is separate."""
    if hw.gpu_offload and hw.gpus and not hw.unified_memory:
        return hw.usable_ram + hw.usable_vram
    return hw.usable_ram


def _recommend(need: Need, hw: Hardware, n_layer: int, gpu_layers: int) -> tuple[str, int] | None:
    """The largest quantization whose file of this model fits, and its size in bytes."""
    if need.detail is None or need.detail.params <= 0:
        return None
    for name, bits in QUANT_BITS_PER_WEIGHT.items():
        weights = int(need.detail.params * bits / 8)
        if _layout(need.with_weights(weights), hw, n_layer, gpu_layers).fits:
            return name, weights
    return None


def _largest_context(need: Need, hw: Hardware, n_layer: int, gpu_layers: int) -> int:
    """The largest context (a multiple of 256) that fits with these weights; 0 if none."""
    lo, hi = 0, need.n_ctx // CTX_PAD
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _layout(need.with_context(mid * CTX_PAD), hw, n_layer, gpu_layers).fits:
            lo = mid
        else:
            hi = mid - 1
    return lo * CTX_PAD


def plan_fit(need: Need, hardware: Hardware, *, n_layer: int | None = None,
             gpu_layers: int = -1) -> Fit:
    """Decides where a load goes.

    Usable memory is the free memory less a reserve (:attr:`Hardware.usable_ram`,
    :attr:`Hardware.usable_vram`). With ``gpu_layers`` -1 (automatic):

    1. all on the GPU if ``need.total`` fits in usable VRAM;
    2. else as many layers as fit: the GPU holds the compute buffers and the projector
       (libmtmd uses the GPU whenever layers are offloaded) plus k layers of
       (weights + KV cache) / n_layer each; the other layers, and a host compute buffer,
       must fit in usable RAM;
    3. else (or without a GPU) all in RAM: ``need.total`` must fit in usable RAM.

    With unified memory (Apple silicon, integrated GPUs) everything also takes RAM. Several
    GPUs count as one with their memory added. A fixed ``gpu_layers`` (0 or more) is
    checked as given. What does not fit gets fits=False and a message saying what would.

    Args:
        need: From :func:`estimate_need`.
        hardware: From :func:`detect_hardware`.
        n_layer: Transformer blocks of the model; None takes them from ``need.detail``.
        gpu_layers: The requested offload: -1 automatic, 0 none, k that many layers.

    Returns:
        The plan, with the largest quantization of this model that would fit.
    """
    if n_layer is None:
        n_layer = need.detail.n_layer if need.detail else 1
    layout = _layout(need, hardware, n_layer, gpu_layers)
    quant = _recommend(need, hardware, n_layer, gpu_layers)
    quant_name = quant[0] if quant else None
    if layout.fits:
        if layout.where == "gpu":
            message = (f"fits on the GPU: needs {_size(need.total)}, "
                       f"{_size(hardware.usable_vram)} free")
        elif layout.where == "gpu+cpu":
            message = (f"{layout.gpu_layers} of {n_layer} layers fit on the GPU, the rest "
                       f"runs from RAM (slower): needs {_size(need.total)}")
        else:
            message = (f"fits in RAM: needs {_size(need.total)}, "
                       f"{_size(hardware.usable_ram)} free")
            if hardware.gpu_offload and hardware.gpus and gpu_layers != 0:
                message += "; the GPU has no room for a layer"
        return Fit(True, layout.gpu_layers, layout.where, message, quant_name,
                   need.warnings, need)

    if gpu_layers > 0 and hardware.gpu_offload and hardware.gpus:
        auto = _layout(need, hardware, n_layer, -1)
        if auto.fits:
            what = "all layers" if auto.gpu_layers < 0 else f"{auto.gpu_layers} layers"
            room = "GPU" if layout.gpu_bytes > hardware.usable_vram else "RAM"
            message = (f"{min(gpu_layers, n_layer)} layers on the GPU need "
                       f"{_size(max(layout.gpu_bytes, layout.ram_bytes))}, more than the "
                       f"{room} has free: offload {what} (or choose automatic)")
            return Fit(False, gpu_layers, "none", message, quant_name, need.warnings, need)

    options = []
    if quant and quant[1] < need.weights:
        options.append(f"a {quant[0]} of this model (about {_size(quant[1])})")
    ctx = _largest_context(need, hardware, n_layer, gpu_layers)
    if ctx >= CTX_PAD and ctx >= need.context:
        options.append(f"a context of at most {ctx} tokens")
    elif ctx >= CTX_PAD:
        options.append(f"a context of at most {ctx} tokens with a smaller beam or stage "
                       f"budget (this search wants {need.context})")
    head = f"needs {_size(need.total)}, {_size(_capacity(hardware))} free"
    if options:
        message = f"{head}: {' or '.join(options)} would fit"
    else:
        message = f"{head}: not even a Q2_K of this model would fit; choose a smaller model"
    return Fit(False, layout.gpu_layers, "none", message, quant_name, need.warnings, need)


def check_fit(
    model: Path | str,
    mmproj: Path | str,
    engine: EngineSettings | None = None,
    search: SearchSettings | None = None,
    *,
    hardware: Hardware | None = None,
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS,
    image_tokens: int | None = None,
) -> Fit:
    """Estimates a pair's need for these settings and plans it on this (or given) hardware.

    Flash attention "auto" counts as on: llama.cpp turns it on where the backend has it.
    A warning is added when ``engine.n_seq_max`` is below what the beam width needs.

    Args:
        model: The text model GGUF.
        mmproj: Its projector GGUF.
        engine: Engine settings; the defaults if None.
        search: Search settings; the defaults if None.
        hardware: The hardware; :func:`detect_hardware` if None.
        prompt_tokens: Tokens of the prompt without the image.
        image_tokens: Tokens of the image; None estimates them (at most
            ``engine.image_tokens`` where that caps them).

    Returns:
        The plan; ``Fit.need`` holds the estimate.

    Raises:
        ModelFileError: A file cannot be read as GGUF.
    """
    from stagewise.models.inference.engine_settings import EngineSettings
    from stagewise.models.reasoning.search_settings import SearchSettings
    from stagewise.models.reasoning.strategies import sequences_needed

    engine = engine or EngineSettings()
    search = search or SearchSettings()
    if image_tokens is None:  # the user's cap on an image's tokens, where it applies
        image_tokens = capped_image_tokens(mmproj, engine.image_tokens)
    hardware = hardware or detect_hardware()
    need = estimate_need(
        model, mmproj, n_ctx=engine.n_ctx, search=search,
        flash_attn=engine.flash_attn != "off", prompt_tokens=prompt_tokens,
        image_tokens=image_tokens, n_batch=engine.n_batch,
        repack=_repack_on_cpu(engine, hardware),
    )
    needed = sequences_needed(search.beam, search.strategy)
    if engine.n_seq_max < needed:
        need = replace(need, warnings=(*need.warnings, (
            f"{search.strategy} search with beam width {search.beam} needs {needed} "
            f"sequences, but the engine allows {engine.n_seq_max}"
        )))
    fit = plan_fit(need, hardware, gpu_layers=engine.gpu_layers)
    return fit


def _repack_on_cpu(engine: EngineSettings, hardware: Hardware) -> tuple[tuple[str, int], ...]:
    """The weight types this load re-lays on the CPU: none when layers may go to a GPU (the
    CPU keeps few), or when the engine keeps extra buffers out (the AMX choice)."""
    if not hardware.repack or (hardware.gpu_offload and hardware.gpus
                               and engine.gpu_layers != 0):
        return ()
    from stagewise.models.inference.cpu_buffers import choose_weight_buffers

    return hardware.repack if choose_weight_buffers(engine.allow_amx).use_extra else ()
