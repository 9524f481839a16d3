"""Writes a LLaVA-1.5 style model pair as GGUF: a ``llama`` text model and an ``mlp`` projector.

Both the random-weight test pairs (:mod:`stagewise.models.build.tiny_vlm`) and the trained demo
model (:mod:`stagewise.models.recipes.demo`) are written here, so the metadata llama.cpp reads is
declared once. Tensors are given as numpy arrays in the usual ``(out, in)`` layout (ggml's
``ne = [in, out]``); the caller decides their types.

What llama.cpp computes from these files (and what a model written here must match):

- text (``llama``): token embedding; per block RMSNorm → attention with interleaved-pair
  RoPE (llama's "normal" rope, not NeoX), grouped K/V heads, no biases → residual;
  RMSNorm → SwiGLU feed-forward → residual; final RMSNorm and the output matrix.
- vision (``clip``, projector ``mlp``): a stride-``patch`` convolution with bias, learned
  position embeddings, a pre-LayerNorm, then ``block_count - 1`` pre-norm ViT blocks
  (LayerNorm with bias, attention with biases, GELU feed-forward); no post-norm; every
  patch goes through ``mm.0`` → GELU → ``mm.2``. The image is resized to
  ``image_size`` squared and normalised with ``image_mean``/``image_std``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

# llama.cpp token types (llama_token_type in llama.h).
TOKEN_NORMAL = 1
TOKEN_CONTROL = 3
TOKEN_USER_DEFINED = 4

Tensors = Iterable[tuple[str, np.ndarray]]


@dataclass(frozen=True)
class Vocabulary:
    """A byte-level BPE tokenizer as llama.cpp reads it ("gpt2" model, GPT-2 pre-tokenizer).

    Attributes:
        tokens: Token texts in GPT-2's byte-to-unicode spelling, indexed by id.
        types: The llama.cpp token type of each token.
        merges: The merges, each "left right", in priority order.
        bos: Text of the beginning-of-text token.
        eos: Text of the end-of-turn token (also end of generation and padding).
    """

    tokens: tuple[str, ...]
    types: tuple[int, ...]
    merges: tuple[str, ...]
    bos: str
    eos: str

    def id(self, text: str) -> int:
        """Id of the token spelt ``text``.

        Raises:
            KeyError: No such token.
        """
        try:
            return self.tokens.index(text)
        except ValueError:
            raise KeyError(text) from None


@dataclass(frozen=True)
class CopiedTokenizer:
    """A real model's tokenizer, copied key by key from a GGUF (such as llama.cpp's
    ``models/ggml-vocab-*.gguf``, vocabulary-only files of real tokenizers).

    Attributes:
        fields: ``(key, value, type, item type)`` of every ``tokenizer.ggml.*`` key, with
            gguf-py's value types, so the copy is exact.
    """

    fields: tuple[tuple[str, Any, gguf.GGUFValueType, gguf.GGUFValueType | None], ...]

    @classmethod
    def from_gguf(cls, path: str | Path) -> CopiedTokenizer:
        reader = gguf.GGUFReader(str(path))
        fields = []
        for key, field in reader.fields.items():
            if not key.startswith("tokenizer.ggml."):
                continue
            kind = field.types[0]
            item = field.types[1] if kind == gguf.GGUFValueType.ARRAY else None
            fields.append((key, field.contents(), kind, item))
        if not any(key == "tokenizer.ggml.tokens" for key, *_ in fields):
            raise ValueError(f"{path}: no tokenizer.ggml.tokens")
        return cls(tuple(fields))

    def value(self, key: str) -> Any:
        """The value of ``tokenizer.ggml.<key>``, None when absent."""
        return next((v for k, v, *_ in self.fields if k == f"tokenizer.ggml.{key}"), None)

    @property
    def tokens(self) -> list[str]:
        return list(self.value("tokens"))

    @property
    def types(self) -> list[int]:
        types = self.value("token_type")
        return list(types) if types is not None else [TOKEN_NORMAL] * len(self.tokens)


@dataclass(frozen=True)
class TextHyper:
    """Hyper-parameters of the ``llama`` text model."""

    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_ctx_train: int
    rms_eps: float = 1e-5
    rope_base: float = 10000.0


@dataclass(frozen=True)
class VisionHyper:
    """Hyper-parameters of the vision tower and projector."""

    image_size: int
    patch_size: int
    v_embd: int
    v_layer: int  # blocks written; the LLaVA graph runs v_layer - 1
    v_head: int
    v_ff: int
    n_out: int  # the projector's output width: the text model's n_embd
    image_mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    image_std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    ln_eps: float = 1e-5


class _Omitting:
    """Wraps a GGUFWriter so that named keys and tensors can be left out (for broken files)."""

    def __init__(self, writer: gguf.GGUFWriter, omit: Collection[str]) -> None:
        self.writer = writer
        self.omit = frozenset(omit)

    def kv(self, key: str, add: Callable[[], None]) -> None:
        if key not in self.omit:
            add()

    def tensor(self, name: str, data: np.ndarray) -> None:
        if name not in self.omit:
            self.writer.add_tensor(name, data)


def _finish(writer: gguf.GGUFWriter) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_text_model(
    path: str | object,
    hyper: TextHyper,
    vocab: Vocabulary | CopiedTokenizer,
    tensors: Tensors,
    *,
    name: str,
    chat_template: str,
    file_type: int,
    extra: Sequence[tuple[str, str]] = (),
    omit: Collection[str] = (),
) -> None:
    """Writes the text model.

    Args:
        path: File to write (overwritten).
        hyper: Its sizes.
        vocab: Its tokenizer.
        tensors: ``(name, array)`` pairs with GGUF tensor names ("blk.0.attn_q.weight").
        name: ``general.name``.
        chat_template: The Jinja chat template.
        file_type: ``general.file_type`` (0 F32, 1 F16).
        extra: More string metadata, such as ``("stagewise.stage_mode", "native")``.
        omit: Metadata keys or tensor names to leave out (for tests of broken files).
    """
    arch = "llama"
    w = gguf.GGUFWriter(str(path), arch)
    o = _Omitting(w, omit)
    h = hyper
    o.kv("general.name", lambda: w.add_name(name))
    o.kv(f"{arch}.context_length", lambda: w.add_context_length(h.n_ctx_train))
    o.kv(f"{arch}.embedding_length", lambda: w.add_embedding_length(h.n_embd))
    o.kv(f"{arch}.block_count", lambda: w.add_block_count(h.n_layer))
    o.kv(f"{arch}.feed_forward_length", lambda: w.add_feed_forward_length(h.n_ff))
    o.kv(f"{arch}.attention.head_count", lambda: w.add_head_count(h.n_head))
    o.kv(f"{arch}.attention.head_count_kv", lambda: w.add_head_count_kv(h.n_head_kv))
    o.kv(f"{arch}.attention.layer_norm_rms_epsilon", lambda: w.add_layer_norm_rms_eps(h.rms_eps))
    o.kv(f"{arch}.rope.dimension_count", lambda: w.add_rope_dimension_count(h.n_embd // h.n_head))
    o.kv(f"{arch}.rope.freq_base", lambda: w.add_rope_freq_base(h.rope_base))
    o.kv(f"{arch}.vocab_size", lambda: w.add_vocab_size(len(vocab.tokens)))
    o.kv("general.file_type", lambda: w.add_file_type(file_type))
    if isinstance(vocab, CopiedTokenizer):
        for key, value, kind, item in vocab.fields:
            o.kv(key, lambda key=key, value=value, kind=kind, item=item:
                 w.add_key_value(key, value, kind, item))
    else:
        _add_bpe(o, w, vocab)
    o.kv("tokenizer.chat_template", lambda: w.add_chat_template(chat_template))
    for key, value in extra:
        o.kv(key, lambda key=key, value=value: w.add_string(key, value))
    for tensor_name, data in tensors:
        o.tensor(tensor_name, data)
    _finish(w)


def _add_bpe(o: _Omitting, w: gguf.GGUFWriter, vocab: Vocabulary) -> None:
    o.kv("tokenizer.ggml.model", lambda: w.add_tokenizer_model("gpt2"))
    o.kv("tokenizer.ggml.pre", lambda: w.add_tokenizer_pre("gpt-2"))
    o.kv("tokenizer.ggml.tokens", lambda: w.add_token_list(list(vocab.tokens)))
    o.kv("tokenizer.ggml.token_type", lambda: w.add_token_types(list(vocab.types)))
    o.kv("tokenizer.ggml.merges", lambda: w.add_token_merges(list(vocab.merges)))
    o.kv("tokenizer.ggml.bos_token_id", lambda: w.add_bos_token_id(vocab.id(vocab.bos)))
    o.kv("tokenizer.ggml.eos_token_id", lambda: w.add_eos_token_id(vocab.id(vocab.eos)))
    o.kv("tokenizer.ggml.eot_token_id", lambda: w.add_eot_token_id(vocab.id(vocab.eos)))
    o.kv("tokenizer.ggml.padding_token_id", lambda: w.add_pad_token_id(vocab.id(vocab.eos)))
    o.kv("tokenizer.ggml.add_bos_token", lambda: w.add_add_bos_token(False))


def write_projector(
    path: str | object,
    hyper: VisionHyper,
    tensors: Tensors,
    *,
    name: str,
    file_type: int = 0,
    omit: Collection[str] = (),
    projector_type: str = "mlp",
) -> None:
    """Writes the vision tower and its ``mlp`` projector.

    Args:
        path: File to write (overwritten).
        hyper: Its sizes.
        tensors: ``(name, array)`` pairs with GGUF tensor names ("v.blk.0.attn_q.weight").
        name: ``general.name``.
        file_type: ``general.file_type`` (0 F32, 1 F16).
        omit: Metadata keys or tensor names to leave out (for tests of broken files).
        projector_type: ``clip.projector_type``; another type than "mlp" makes a file whose
            tensors do not match its type (for tests of broken files).
    """
    w = gguf.GGUFWriter(str(path), "clip")
    o = _Omitting(w, omit)
    h = hyper
    o.kv("general.name", lambda: w.add_name(name))
    o.kv("general.file_type", lambda: w.add_file_type(file_type))
    o.kv("clip.projector_type", lambda: w.add_string("clip.projector_type", projector_type))
    o.kv("clip.has_vision_encoder", lambda: w.add_bool("clip.has_vision_encoder", True))
    o.kv("clip.has_text_encoder", lambda: w.add_bool("clip.has_text_encoder", False))
    o.kv("clip.use_gelu", lambda: w.add_bool("clip.use_gelu", True))
    for key, value in (
        ("embedding_length", h.v_embd),
        ("feed_forward_length", h.v_ff),
        ("block_count", h.v_layer),
        ("projection_dim", h.n_out),
        ("attention.head_count", h.v_head),
        ("image_size", h.image_size),
        ("patch_size", h.patch_size),
    ):
        full = f"clip.vision.{key}"
        o.kv(full, lambda full=full, value=value: w.add_uint32(full, value))
    o.kv(
        "clip.vision.attention.layer_norm_epsilon",
        lambda: w.add_float32("clip.vision.attention.layer_norm_epsilon", h.ln_eps),
    )
    o.kv("clip.vision.image_mean",
         lambda: w.add_array("clip.vision.image_mean", list(h.image_mean)))
    o.kv("clip.vision.image_std",
         lambda: w.add_array("clip.vision.image_std", list(h.image_std)))
    for tensor_name, data in tensors:
        o.tensor(tensor_name, data)
    _finish(w)
