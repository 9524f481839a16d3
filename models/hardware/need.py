"""What a model pair and a search need: memory (bytes) and context (tokens).

:func:`estimate_need` reads the headers of a text model and its projector (no weights are
loaded) and estimates the bytes a run needs: weights, projector, KV cache and compute
buffers, and the context (tokens) a search of a given beam width fills.
:func:`kv_bytes_per_token` is a part of it that is useful on its own (so is
:func:`~stagewise.models.hardware.image_need.estimate_image_tokens`); :func:`need_from_detail`
re-applies its formulas to other numbers.

Formulas follow the llama.cpp that llama-cpp-python 0.3.36 vendors; each is documented where
it is used. The estimates are meant to be a little high rather than low.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from stagewise.models.hardware.image_need import image_tokens_and_patches, vision_compute_bytes
from stagewise.models.inference.engine_settings import AUTO_CTX, FALLBACK_CTX
from stagewise.models.inference.gguf_header import GGUFInfo, LongArray, inspect_gguf, int_value
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.reasoning.search_sizes import DEFAULT_PROMPT_TOKENS
from stagewise.models.reasoning.strategies import context_need, longest_sequence

__all__ = [
    "CTX_PAD",
    "KV_ELEMENT_BYTES",
    "Need",
    "NeedDetail",
    "choose_context",
    "estimate_need",
    "kv_bytes_per_token",
    "need_from_detail",
]


# Bytes of one KV cache element: llama.cpp's default type_k / type_v is F16, which the engine
# does not change.
KV_ELEMENT_BYTES = 2
# llama-context.cpp (llama_context::llama_context): cparams.n_ctx = GGML_PAD(cparams.n_ctx, 256).
CTX_PAD = 256

@dataclass(frozen=True)
class NeedDetail:
    """The model numbers behind a :class:`Need`, to re-estimate it for another context.

    Attributes:
        params: Parameters of the text model (elements of all its tensors).
        n_layer: Transformer blocks of the text model.
        n_vocab: Vocabulary size.
        n_ctx_train: The context the model was trained for (0 if unknown).
        kv_per_token: KV cache bytes per context cell, over all layers.
        attn_per_token: Compute buffer bytes per context cell (attention scores or mask).
        logits: Compute buffer bytes of one micro-batch's logits.
        activations: Compute buffer bytes of one micro-batch's other activations.
        vision_compute: Bytes for encoding one image (or one tile), with its embeddings.
        image_tokens: Tokens one image takes in the context (estimated or given).
    """

    params: int
    n_layer: int
    n_vocab: int
    n_ctx_train: int
    kv_per_token: int
    attn_per_token: int
    logits: int
    activations: int
    vision_compute: int
    image_tokens: int


@dataclass(frozen=True)
class Need:
    """Memory (bytes) and context (tokens) a model pair and a search need.

    Attributes:
        weights: Tensor data of the text model.
        projector: Tensor data of the projector.
        kv_cache: KV cache for :attr:`n_ctx` cells.
        compute: Compute buffers: the text model's and the image encoder's.
        total: The sum of the four: what the run keeps using, which the fit plans with.
        repacked: The second copy of the text model's matrices that llama.cpp's CPU backend
            re-lays for its faster kernels (``CPU_REPACK``). At load the process holds it
            beside the mapped file (:attr:`peak`); the mapped pages of those matrices are
            not read again, so the system can drop them when memory is short, and
            :attr:`total` leaves them out. 0 where nothing is re-laid (a GPU load, extra
            buffers kept out, a build without them).
        context: Tokens the search needs in the context (see :func:`estimate_need`).
        n_ctx: Cells the KV cache is sized for: the larger of the requested context and
            :attr:`context`, padded to 256 as llama.cpp pads it.
        warnings: Problems that do not stop a load (the context is too small for the search,
            or longer than the model was trained for).
        detail: The numbers the estimate was made from; None for made-up needs.
    """

    weights: int
    projector: int
    kv_cache: int
    compute: int
    total: int
    context: int
    n_ctx: int = 0
    warnings: tuple[str, ...] = ()
    detail: NeedDetail | None = None
    repacked: int = 0

    @property
    def peak(self) -> int:
        """The resident memory the process reaches, as ``ru_maxrss`` counts it: the total
        and, during the load, the re-laid copies beside the mapped file."""
        return self.total + self.repacked

    def with_weights(self, weights: int) -> Need:
        """The same need with other weights (another quantization of the model; its
        re-laid share taken as this one's)."""
        repacked = self.repacked * weights // max(self.weights, 1)
        return replace(self, weights=weights, repacked=repacked,
                       total=self.total - self.weights + weights)

    def with_context(self, n_ctx: int) -> Need:
        """The same need with the KV cache and compute buffers of another context size.

        Without :attr:`detail`, only the KV cache is scaled.
        """
        n_ctx = _pad(n_ctx)
        if self.detail is None:
            kv = self.kv_cache * n_ctx // max(self.n_ctx, 1)
            return replace(self, kv_cache=kv, total=self.total - self.kv_cache + kv, n_ctx=n_ctx)
        return need_from_detail(self.detail, weights=self.weights, projector=self.projector,
                                context=self.context, n_ctx=n_ctx, warnings=self.warnings,
                                repacked=self.repacked)


def _tensor_bytes(info: GGUFInfo) -> tuple[int, int]:
    """Bytes of tensor data and number of parameters, from the header's shapes and types."""
    n_bytes = n_params = 0
    for dims, type_name in info.tensors.values():
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType[type_name]]
        count = math.prod(dims)
        n_params += count
        n_bytes += count * type_size // block
    return n_bytes, n_params


def _repacked_bytes(info: GGUFInfo, repack: Sequence[tuple[str, int]]) -> int:
    """Bytes of the matrices llama.cpp's CPU backend re-lays: those of a ``repack`` type
    whose rows are a multiple of its number, used in matrix products (the token
    embedding is read by rows, and stays)."""
    multiples = dict(repack)
    n_bytes = 0
    for name, (dims, type_name) in info.tensors.items():
        multiple = multiples.get(type_name)
        if (multiple is None or len(dims) < 2 or dims[1] % multiple
                or name == "token_embd.weight"):
            continue
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType[type_name]]
        n_bytes += math.prod(dims) * type_size // block
    return n_bytes


def _per_layer(value: object, n_layer: int, default: int) -> list[int]:
    """A scalar or per-layer metadata value as one number per layer.

    Arrays too long to have been decoded (:class:`LongArray`) fall back to ``default``.
    """
    if isinstance(value, list) and value and all(int_value(v) is not None for v in value):
        values = [int(v) for v in value][:n_layer]
        return values + [values[-1]] * (n_layer - len(values))
    scalar = int_value(value)
    return [default if scalar is None else scalar] * n_layer


def _arch_value(info: GGUFInfo, suffix: str) -> object:
    return info.metadata.get(f"{info.architecture}.{suffix}")


def kv_bytes_per_token(info: GGUFInfo) -> int:
    """KV cache bytes per context cell of a text model, over all its layers.

    llama.cpp sizes the cache of layer ``il`` as ``n_embd_k_gqa(il) + n_embd_v_gqa(il)``
    elements per cell (src/llama-kv-cache.cpp), where (src/llama-hparams.cpp)
    ``n_embd_k_gqa(il) = n_embd_head_k * n_head_kv(il)`` and likewise for V, and
    (src/llama-model.cpp, load_hparams) ``n_embd_head_k = n_embd / n_head(0)`` unless
    ``{arch}.attention.key_length`` says otherwise (``value_length`` for V).
    ``head_count_kv`` defaults to ``head_count`` and may be per layer (0: no KV there).
    Sliding-window layers are counted at full size: more than llama.cpp allocates for them.
    """
    n_layer = int_value(_arch_value(info, "block_count")) or 0
    n_embd = info.n_embd or 0
    head = _per_layer(_arch_value(info, "attention.head_count"), n_layer, 0)
    if n_layer == 0 or not head or head[0] <= 0:
        return 0
    head_kv_raw = _arch_value(info, "attention.head_count_kv")
    head_kv = _per_layer(head_kv_raw, n_layer, max(head))
    if head_kv_raw is None:
        head_kv = head
    head_k = int_value(_arch_value(info, "attention.key_length")) or n_embd // head[0]
    head_v = int_value(_arch_value(info, "attention.value_length")) or n_embd // head[0]
    elements = sum(head_k * kv + head_v * kv for kv in head_kv)
    return elements * KV_ELEMENT_BYTES


def _pad(n: int) -> int:
    return -(-n // CTX_PAD) * CTX_PAD


def _text_compute(detail: NeedDetail, n_ctx: int) -> int:
    return max(n_ctx * detail.attn_per_token, detail.logits) + detail.activations


def need_from_detail(detail: NeedDetail, *, weights: int, projector: int, context: int,
                     n_ctx: int, warnings: tuple[str, ...] = (), repacked: int = 0) -> Need:
    """A :class:`Need` from its model numbers, with the formulas of :func:`estimate_need`.

    Args:
        detail: The model numbers.
        weights: Bytes of the text model's tensor data.
        projector: Bytes of the projector's tensor data.
        context: Tokens the search needs.
        n_ctx: Cells of the KV cache (already padded).
        warnings: Carried over as they are.
        repacked: Bytes of the re-laid second copy of weights.
    """
    kv = n_ctx * detail.kv_per_token
    compute = _text_compute(detail, n_ctx) + detail.vision_compute
    return Need(
        weights=weights, projector=projector, kv_cache=kv, compute=compute,
        total=weights + projector + kv + compute, context=context, n_ctx=n_ctx,
        warnings=warnings, detail=detail, repacked=repacked,
    )


def estimate_need(
    model: Path | str,
    mmproj: Path | str,
    *,
    n_ctx: int,
    search: SearchSettings | None = None,
    flash_attn: bool = False,
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS,
    image_tokens: int | None = None,
    n_batch: int = 512,
    repack: Sequence[tuple[str, int]] = (),
) -> Need:
    """Estimates the memory and the context a model pair and a search need.

    Only the GGUF headers are read. The parts, each documented where it is computed:

    * **weights**, **projector**: the tensor data of each file, from the shapes and types
      in its header (the file size less the header and padding).
    * **context** (tokens): one question's peak: the prompt and the image, every
      candidate's answer, and the selection's prompts cached meanwhile, as the search's
      strategy counts them (:func:`~stagewise.models.reasoning.strategies.context_need`).
    * **kv_cache**: ``n_ctx_alloc`` cells of :func:`kv_bytes_per_token` bytes, where
      ``n_ctx_alloc`` is the larger of ``n_ctx`` and ``context``, padded to 256 as
      llama.cpp pads it: the cache the run really needs.
    * **compute**: a rough allowance, calibrated on llama.cpp's CPU compute buffer and
      erring high (``_need_detail``), plus the image encoder's
      (:func:`~stagewise.models.hardware.image_need.vision_compute_bytes`).
    * **repacked**: the matrices of the ``repack`` types, which llama.cpp's CPU backend
      copies into its re-laid ``CPU_REPACK`` buffer at load while the file is still mapped
      (on the catalogue's Q4_K_M models about two thirds of the weights; to the MiB on four
      real-shape pairs by ``bench/real_size.py``): in :attr:`Need.peak`, not in the total.

    A context need larger than ``n_ctx``, or one sequence longer than the model's trained
    context, is reported in :attr:`Need.warnings`.

    Args:
        model: The text model GGUF.
        mmproj: Its projector GGUF.
        n_ctx: The context the engine is to be created with; ``AUTO_CTX`` (0) chooses
            one (:func:`choose_context`), which the need's ``n_ctx`` then holds.
        search: The search's settings (strategy, selection, beam, budgets); the defaults
            if None.
        flash_attn: Whether flash attention is used (llama.cpp's "auto" turns it on on
            every backend that has it, which is all common ones).
        prompt_tokens: Tokens of the prompt without the image (template and question).
        image_tokens: Tokens of the image; None estimates them from the projector.
        n_batch: The engine's batch (and micro-batch) size.
        repack: The weight types re-laid on this CPU, each with its row multiple
            (:attr:`~stagewise.models.hardware.devices.Hardware.repack`); empty when the
            text model is not loaded on the CPU with extra buffers.

    Returns:
        The estimate.

    Raises:
        ModelFileError: A file cannot be read as GGUF.
    """
    text = inspect_gguf(model)
    proj = inspect_gguf(mmproj)
    weights, params = _tensor_bytes(text)
    projector, _ = _tensor_bytes(proj)
    detail = _need_detail(text, proj, params=params, image_tokens=image_tokens,
                          n_batch=n_batch, flash_attn=flash_attn)
    search = search or SearchSettings()
    context = context_need(search, prompt_tokens=prompt_tokens,
                           image_tokens=detail.image_tokens)
    longest = longest_sequence(search, prompt_tokens=prompt_tokens,
                               image_tokens=detail.image_tokens)
    if n_ctx == AUTO_CTX:
        n_ctx = choose_context(detail.n_ctx_train, context)
    warnings = _context_warnings(context, n_ctx=n_ctx, beam=search.beam,
                                 n_ctx_train=detail.n_ctx_train, longest=longest)
    return need_from_detail(detail, weights=weights, projector=projector, context=context,
                            n_ctx=_pad(max(n_ctx, context)), warnings=warnings,
                            repacked=_repacked_bytes(text, repack))


def _vocab_size(text: GGUFInfo) -> int:
    """The vocabulary size: from the token embedding, the metadata or the token list."""
    embd = text.tensors.get("token_embd.weight")
    vocab = _arch_value(text, "vocab_size")
    tokens_list = text.metadata.get("tokenizer.ggml.tokens")
    return (
        (embd[0][1] if embd and len(embd[0]) > 1 else None)
        or int_value(vocab)
        or (tokens_list.length if isinstance(tokens_list, LongArray) else None)
        or (len(tokens_list) if isinstance(tokens_list, list) else 0)
    )


def _need_detail(text: GGUFInfo, proj: GGUFInfo, *, params: int, image_tokens: int | None,
                 n_batch: int, flash_attn: bool) -> NeedDetail:
    """The model numbers of a text model and its projector, for :func:`need_from_detail`.

    The text model's compute allowance, with U = ``n_batch`` (the engine's micro-batch),
    is ``max(n_ctx_alloc × U × a, U × n_vocab × 4) + U × (4·n_embd + 2·n_ff) × 4``, where
    the attention part ``a`` is ``(n_head + 1) × 4`` bytes (f32 scores and mask) without
    flash attention and 2 (the f16 mask) with it. ``image_tokens`` None estimates them
    from the projector
    (:func:`~stagewise.models.hardware.image_need.estimate_image_tokens`).
    """
    n_layer = int_value(_arch_value(text, "block_count")) or 1
    n_embd = text.n_embd or 0
    heads = _per_layer(_arch_value(text, "attention.head_count"), n_layer, 0)
    n_head = max(heads) if heads else 0
    n_ff = max(_per_layer(_arch_value(text, "feed_forward_length"), n_layer, 4 * n_embd))
    n_vocab = _vocab_size(text)
    n_ctx_train = int_value(_arch_value(text, "context_length")) or 0

    est_tokens, patches = image_tokens_and_patches(proj)
    if image_tokens is None:
        image_tokens = est_tokens
    else:
        patches = max(1, patches * image_tokens // max(est_tokens, 1))
    ubatch = max(1, n_batch)
    return NeedDetail(
        params=params,
        n_layer=n_layer,
        n_vocab=n_vocab,
        n_ctx_train=n_ctx_train,
        kv_per_token=kv_bytes_per_token(text),
        attn_per_token=ubatch * (2 if flash_attn else (n_head + 1) * 4),
        logits=ubatch * n_vocab * 4,
        activations=ubatch * (4 * n_embd + 2 * n_ff) * 4,
        vision_compute=vision_compute_bytes(proj, patches, image_tokens, n_embd, flash_attn),
        image_tokens=image_tokens,
    )


def choose_context(n_ctx_train: int, context: int) -> int:
    """The automatic context size: the model's trained context, at most
    :data:`~stagewise.models.inference.engine_settings.FALLBACK_CTX`, or what the search
    needs (``context``, padded) when that is more.

    Args:
        n_ctx_train: The context the model was trained for (0 if unknown).
        context: Cells the search needs at its peak
            (:func:`~stagewise.models.reasoning.strategies.context_need`).
    """
    ceiling = min(FALLBACK_CTX, n_ctx_train) if n_ctx_train else FALLBACK_CTX
    return max(_pad(ceiling), _pad(context))


def _context_warnings(context: int, *, n_ctx: int, beam: int, n_ctx_train: int,
                      longest: int) -> tuple[str, ...]:
    """What is wrong with a context of ``n_ctx`` for a search that needs ``context`` cells
    and writes at most ``longest`` positions in one sequence."""
    warnings = []
    if context > n_ctx:
        warnings.append(
            f"a search with beam width {beam} needs about {context} tokens of context, but the "
            f"context is {n_ctx}: raise the context size or lower the beam width or the stage "
            "budget"
        )
    if n_ctx_train and longest > n_ctx_train:
        warnings.append(
            f"one answer or judgement can reach {longest} tokens, longer than the model was "
            f"trained for ({n_ctx_train}); answers may degrade: lower the stage budget"
        )
    return tuple(warnings)
