"""Random-weight tiny vision-language model pairs for tests and benchmarks.

:func:`write_tiny_pair` writes a text model (GGUF architecture ``llama``) and a
LLaVA-1.5 style projector (GGUF architecture ``clip``, projector type ``mlp``)
that llama.cpp and its ``mtmd`` library load and run like a real pair. The
weights are random, so the output is gibberish, but every code path is real:
tokenizer, chat template, image encoding, decoding.

The tokenizer is a byte-level BPE ("gpt2" in llama.cpp terms) with the 256
GPT-2 byte symbols, a few hundred merges learnt deterministically from a small
built-in English text, the ChatML control tokens and the eight stage tags
(``<SUMMARY>`` ... ``</CONCLUSION>``), each tag a single user-defined token that
tokenizes from plain text and detokenizes back to its text.

Only ``numpy`` and ``gguf`` are needed; nothing is downloaded.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from pathlib import Path

import gguf
import numpy as np

__all__ = [
    "BENCH",
    "BOS_TOKEN",
    "CHATML_TEMPLATE",
    "EOS_TOKEN",
    "IM_START_TOKEN",
    "STAGE_MODES",
    "STAGE_TAGS",
    "TINY",
    "TinyPair",
    "TinySpec",
    "token_id",
    "vocabulary",
    "write_tiny_pair",
]

IM_START_TOKEN = "<|im_start|>"
EOS_TOKEN = "<|im_end|>"
BOS_TOKEN = "<|begin_of_text|>"
STAGE_TAGS: tuple[str, ...] = (
    "<SUMMARY>",
    "</SUMMARY>",
    "<CAPTION>",
    "</CAPTION>",
    "<REASONING>",
    "</REASONING>",
    "<CONCLUSION>",
    "</CONCLUSION>",
)
STAGE_MODES = ("prompted", "native")

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# llama.cpp token types (llama_token_type in llama.h).
_TOKEN_NORMAL = 1
_TOKEN_CONTROL = 3
_TOKEN_USER_DEFINED = 4

_N_MERGES = 240

# A small English text that the BPE merges are learnt from. Changing it changes
# every token id after the 256 byte symbols.
_CORPUS = """
The image shows a small red house next to a tall green tree. There is a dog
sitting in front of the door, and the sky above the house is blue with a few
white clouds. A person is standing on the left side of the picture, holding an
umbrella. The question asks what the weather is like in the scene.

To answer the question, first describe the picture, then think about the
details, and finally give the answer. The summary of the task: look at the
image, find the relevant objects, count them, and reason about their colors,
positions and sizes. The caption of the image should be short and precise.
The reasoning should explain each step, and the conclusion should state the
final answer clearly.

Another picture shows three cats on a wooden table in a bright kitchen. One cat
is black, one is white and one is orange. There are two cups and a plate of
bread on the table. The light comes from a window on the right. What is the
number of animals in the image? The answer is three, because there are three
cats and no other animals.

This model is a tiny test model with random weights. It is not meant to give
correct answers; it exists so that the whole pipeline, from the prompt to the
tokens, can be tested quickly on any computer without a network connection.
"""


@dataclass(frozen=True)
class TinySpec:
    """Sizes of a tiny model pair.

    Attributes:
        name: Short name; it prefixes the file names.
        n_embd: Width of the text model (and of the projector output).
        n_layer: Number of text transformer blocks.
        n_head: Attention heads of the text model.
        n_head_kv: Key/value heads of the text model.
        n_ff: Feed-forward width of the text model.
        n_ctx_train: Context length written to the text model.
        image_size: Side of the square image the vision tower takes, in pixels.
        patch_size: Side of one vision patch, in pixels.
        v_embd: Width of the vision tower.
        v_layer: Vision blocks written; the LLaVA graph runs ``v_layer - 1``.
        v_head: Attention heads of the vision tower.
        v_ff: Feed-forward width of the vision tower.
        f16: Store the text model's matrices as F16 instead of F32.
    """

    name: str
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_ctx_train: int
    image_size: int
    patch_size: int
    v_embd: int
    v_layer: int
    v_head: int
    v_ff: int
    f16: bool = False

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError("image_size must be a multiple of patch_size")
        if self.n_embd % self.n_head or self.n_head % self.n_head_kv:
            raise ValueError("n_embd must divide into n_head heads, n_head into n_head_kv")
        if self.v_embd % self.v_head:
            raise ValueError("v_embd must divide into v_head heads")
        if self.v_layer < 2:
            raise ValueError("the LLaVA graph runs v_layer - 1 blocks, so v_layer must be >= 2")

    @property
    def n_patches_side(self) -> int:
        """Patches along one side of the (square) image."""
        return self.image_size // self.patch_size

    @property
    def n_image_tokens(self) -> int:
        """Embeddings llama.cpp produces for one image (verified by the tests).

        The "mlp" projector keeps every patch and adds nothing, and the pair has
        no class embedding, so this is the number of patches.
        """
        return self.n_patches_side**2


TINY = TinySpec(
    name="tiny",
    n_embd=128,
    n_layer=2,
    n_head=4,
    n_head_kv=2,
    n_ff=256,
    n_ctx_train=4096,
    image_size=64,
    patch_size=8,
    v_embd=64,
    v_layer=2,
    v_head=2,
    v_ff=128,
)

BENCH = TinySpec(
    name="bench",
    n_embd=512,
    n_layer=8,
    n_head=8,
    n_head_kv=4,
    n_ff=1024,
    n_ctx_train=4096,
    image_size=128,
    patch_size=8,
    v_embd=128,
    v_layer=3,
    v_head=4,
    v_ff=256,
    f16=True,
)


@dataclass(frozen=True)
class TinyPair:
    """Paths of a written text model and its projector."""

    model: Path
    mmproj: Path


# --------------------------------------------------------------------------- tokenizer


@cache
def _byte_symbols() -> tuple[str, ...]:
    """GPT-2's reversible byte-to-unicode table, indexed by byte value."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return tuple(table[b] for b in range(256))


def _learn_merges(text: str, n_merges: int) -> list[tuple[str, str]]:
    """Learns byte-level BPE merges from ``text``, deterministically."""
    symbols = _byte_symbols()
    words = Counter(re.findall(r" ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+", text))
    seqs = {tuple(symbols[b] for b in w.encode()): n for w, n in words.items()}
    merges: list[tuple[str, str]] = []
    while len(merges) < n_merges:
        pairs: Counter[tuple[str, str]] = Counter()
        for seq, n in seqs.items():
            for pair in pairwise(seq):
                pairs[pair] += n
        if not pairs:
            break
        # Most frequent pair; ties broken by the pair's text for determinism.
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        joined = best[0] + best[1]
        new_seqs: dict[tuple[str, ...], int] = {}
        for seq, n in seqs.items():
            out: list[str] = []
            i = 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            new_seqs[tuple(out)] = new_seqs.get(tuple(out), 0) + n
        seqs = new_seqs
    return merges


@cache
def _vocab() -> tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...]]:
    merges = _learn_merges(_CORPUS, _N_MERGES)
    tokens = list(_byte_symbols())
    tokens += [a + b for a, b in merges]
    types = [_TOKEN_NORMAL] * len(tokens)
    tokens += [IM_START_TOKEN, EOS_TOKEN, BOS_TOKEN]
    types += [_TOKEN_CONTROL] * 3
    tokens += STAGE_TAGS
    types += [_TOKEN_USER_DEFINED] * len(STAGE_TAGS)
    if len(set(tokens)) != len(tokens):  # pragma: no cover - guards the corpus
        raise AssertionError("duplicate tokens in the tiny vocabulary")
    return tuple(tokens), tuple(types), tuple(f"{a} {b}" for a, b in merges)


def _quiet_ids() -> list[int]:
    """Tokens the random model should not emit: all but printable ASCII and newline.

    That keeps generated text valid UTF-8 and free of control tokens, stage tags
    and the end-of-turn token, so generation always runs to its token limit.
    """
    tokens, types, _ = _vocab()
    allowed = {_byte_symbols()[b] for b in [*range(0x20, 0x7F), 0x0A]}
    quiet = []
    for i, (text, kind) in enumerate(zip(tokens, types, strict=True)):
        if kind != _TOKEN_NORMAL or not set(text) <= allowed:
            quiet.append(i)
    return quiet


def vocabulary() -> tuple[str, ...]:
    """Token texts of the tiny tokenizer, indexed by token id (same for every spec)."""
    return _vocab()[0]


def token_id(text: str) -> int:
    """Id of a special token (or any vocabulary entry) of the tiny tokenizer.

    Raises:
        KeyError: ``text`` is not a single token.
    """
    try:
        return vocabulary().index(text)
    except ValueError:
        raise KeyError(text) from None


# --------------------------------------------------------------------------- writing


class _Omitting:
    """Wraps a GGUFWriter so that named keys and tensors can be left out."""

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


def _text_tensors(
    spec: TinySpec, rng: np.random.Generator, n_vocab: int, quiet_ids: Iterable[int]
) -> Iterable[tuple[str, np.ndarray]]:
    d = spec.n_embd
    head_dim = d // spec.n_head
    n_kv = spec.n_head_kv * head_dim
    mat = np.float16 if spec.f16 else np.float32

    def lin(n_out: int, n_in: int, gain: float = 0.7) -> np.ndarray:
        # numpy shape (out, in) == ggml ne [in, out]
        return (rng.standard_normal((n_out, n_in)) * (gain / np.sqrt(n_in))).astype(mat)

    def norm() -> np.ndarray:
        return (1.0 + 0.05 * rng.standard_normal(d)).astype(np.float32)

    yield "token_embd.weight", rng.standard_normal((n_vocab, d)).astype(mat)
    for i in range(spec.n_layer):
        yield f"blk.{i}.attn_norm.weight", norm()
        yield f"blk.{i}.attn_q.weight", lin(d, d, 1.5)
        yield f"blk.{i}.attn_k.weight", lin(n_kv, d, 1.5)
        yield f"blk.{i}.attn_v.weight", lin(n_kv, d)
        yield f"blk.{i}.attn_output.weight", lin(d, d)
        yield f"blk.{i}.ffn_norm.weight", norm()
        yield f"blk.{i}.ffn_gate.weight", lin(spec.n_ff, d, 1.0)
        yield f"blk.{i}.ffn_up.weight", lin(spec.n_ff, d, 1.0)
        yield f"blk.{i}.ffn_down.weight", lin(d, spec.n_ff, 1.0)
    yield "output_norm.weight", norm()
    out = rng.standard_normal((n_vocab, d)) * (3.0 / np.sqrt(d))
    # Quiet tokens get a zero logit while the others spread with a standard
    # deviation of about 3, so the random model (practically) never emits them.
    out[list(quiet_ids)] = 0.0
    yield "output.weight", out.astype(mat)


def _write_text_model(
    path: Path, spec: TinySpec, rng: np.random.Generator, stage_mode: str, omit: Collection[str]
) -> None:
    tokens, types, merges = _vocab()
    arch = "llama"
    w = gguf.GGUFWriter(str(path), arch)
    o = _Omitting(w, omit)
    head_dim = spec.n_embd // spec.n_head
    o.kv("general.name", lambda: w.add_name(f"stagewise-{spec.name}-random"))
    o.kv(f"{arch}.context_length", lambda: w.add_context_length(spec.n_ctx_train))
    o.kv(f"{arch}.embedding_length", lambda: w.add_embedding_length(spec.n_embd))
    o.kv(f"{arch}.block_count", lambda: w.add_block_count(spec.n_layer))
    o.kv(f"{arch}.feed_forward_length", lambda: w.add_feed_forward_length(spec.n_ff))
    o.kv(f"{arch}.attention.head_count", lambda: w.add_head_count(spec.n_head))
    o.kv(f"{arch}.attention.head_count_kv", lambda: w.add_head_count_kv(spec.n_head_kv))
    o.kv(f"{arch}.attention.layer_norm_rms_epsilon", lambda: w.add_layer_norm_rms_eps(1e-5))
    o.kv(f"{arch}.rope.dimension_count", lambda: w.add_rope_dimension_count(head_dim))
    o.kv(f"{arch}.rope.freq_base", lambda: w.add_rope_freq_base(10000.0))
    o.kv(f"{arch}.vocab_size", lambda: w.add_vocab_size(len(tokens)))
    o.kv("general.file_type", lambda: w.add_file_type(1 if spec.f16 else 0))
    o.kv("tokenizer.ggml.model", lambda: w.add_tokenizer_model("gpt2"))
    o.kv("tokenizer.ggml.pre", lambda: w.add_tokenizer_pre("gpt-2"))
    o.kv("tokenizer.ggml.tokens", lambda: w.add_token_list(list(tokens)))
    o.kv("tokenizer.ggml.token_type", lambda: w.add_token_types(list(types)))
    o.kv("tokenizer.ggml.merges", lambda: w.add_token_merges(list(merges)))
    o.kv("tokenizer.ggml.bos_token_id", lambda: w.add_bos_token_id(tokens.index(BOS_TOKEN)))
    o.kv("tokenizer.ggml.eos_token_id", lambda: w.add_eos_token_id(tokens.index(EOS_TOKEN)))
    o.kv("tokenizer.ggml.eot_token_id", lambda: w.add_eot_token_id(tokens.index(EOS_TOKEN)))
    o.kv("tokenizer.ggml.padding_token_id", lambda: w.add_pad_token_id(tokens.index(EOS_TOKEN)))
    o.kv("tokenizer.ggml.add_bos_token", lambda: w.add_add_bos_token(False))
    o.kv("tokenizer.chat_template", lambda: w.add_chat_template(CHATML_TEMPLATE))
    o.kv("stagewise.stage_mode", lambda: w.add_string("stagewise.stage_mode", stage_mode))
    quiet = _quiet_ids()
    for name, data in _text_tensors(spec, rng, len(tokens), quiet):
        o.tensor(name, data)
    _finish(w)


def _write_projector(
    path: Path, spec: TinySpec, rng: np.random.Generator, n_out: int, omit: Collection[str]
) -> None:
    w = gguf.GGUFWriter(str(path), "clip")
    o = _Omitting(w, omit)
    v = spec.v_embd
    n_pos = spec.n_image_tokens  # no class embedding

    def lin(n_out_: int, n_in: int, gain: float = 1.0) -> np.ndarray:
        return (rng.standard_normal((n_out_, n_in)) * (gain / np.sqrt(n_in))).astype(np.float32)

    def vec(n: int, mean: float = 0.0, std: float = 0.02) -> np.ndarray:
        return (mean + std * rng.standard_normal(n)).astype(np.float32)

    o.kv("general.name", lambda: w.add_name(f"stagewise-{spec.name}-random-mmproj"))
    o.kv("general.file_type", lambda: w.add_file_type(0))
    o.kv("clip.projector_type", lambda: w.add_string("clip.projector_type", "mlp"))
    o.kv("clip.has_vision_encoder", lambda: w.add_bool("clip.has_vision_encoder", True))
    o.kv("clip.has_text_encoder", lambda: w.add_bool("clip.has_text_encoder", False))
    o.kv("clip.use_gelu", lambda: w.add_bool("clip.use_gelu", True))
    for key, value in (
        ("embedding_length", v),
        ("feed_forward_length", spec.v_ff),
        ("block_count", spec.v_layer),
        ("projection_dim", n_out),
        ("attention.head_count", spec.v_head),
        ("image_size", spec.image_size),
        ("patch_size", spec.patch_size),
    ):
        full = f"clip.vision.{key}"
        o.kv(full, lambda full=full, value=value: w.add_uint32(full, value))
    o.kv(
        "clip.vision.attention.layer_norm_epsilon",
        lambda: w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5),
    )
    o.kv(
        "clip.vision.image_mean",
        lambda: w.add_array("clip.vision.image_mean", [0.48145466, 0.4578275, 0.40821073]),
    )
    o.kv(
        "clip.vision.image_std",
        lambda: w.add_array("clip.vision.image_std", [0.26862954, 0.26130258, 0.27577711]),
    )

    p = spec.patch_size
    # conv kernel: ggml ne [p, p, 3, v] == numpy (v, 3, p, p)
    o.tensor(
        "v.patch_embd.weight",
        (rng.standard_normal((v, 3, p, p)) / np.sqrt(3 * p * p)).astype(np.float32),
    )
    o.tensor("v.patch_embd.bias", vec(v))
    o.tensor("v.position_embd.weight", (0.5 * rng.standard_normal((n_pos, v))).astype(np.float32))
    o.tensor("v.pre_ln.weight", vec(v, 1.0))
    o.tensor("v.pre_ln.bias", vec(v))
    for i in range(spec.v_layer):
        b = f"v.blk.{i}"
        for part in ("attn_q", "attn_k", "attn_v", "attn_out"):
            o.tensor(f"{b}.{part}.weight", lin(v, v))
            o.tensor(f"{b}.{part}.bias", vec(v))
        o.tensor(f"{b}.ln1.weight", vec(v, 1.0))
        o.tensor(f"{b}.ln1.bias", vec(v))
        o.tensor(f"{b}.ln2.weight", vec(v, 1.0))
        o.tensor(f"{b}.ln2.bias", vec(v))
        o.tensor(f"{b}.ffn_up.weight", lin(spec.v_ff, v))
        o.tensor(f"{b}.ffn_up.bias", vec(spec.v_ff))
        o.tensor(f"{b}.ffn_down.weight", lin(v, spec.v_ff))
        o.tensor(f"{b}.ffn_down.bias", vec(v))
    o.tensor("mm.0.weight", lin(n_out, v))
    o.tensor("mm.0.bias", vec(n_out))
    o.tensor("mm.2.weight", lin(n_out, n_out, 3.0))
    o.tensor("mm.2.bias", vec(n_out))
    _finish(w)


def write_tiny_pair(
    directory: Path | str,
    spec: TinySpec = TINY,
    *,
    seed: int = 0,
    stage_mode: str = "prompted",
    mmproj_n_embd: int | None = None,
    _omit_model: Collection[str] = (),
    _omit_mmproj: Collection[str] = (),
) -> TinyPair:
    """Writes a random-weight text model and projector into ``directory``.

    The files are ``{spec.name}-model.gguf`` and ``{spec.name}-mmproj.gguf``;
    existing files are overwritten. The same arguments give the same bytes.

    Args:
        directory: Folder to write into; created if missing.
        spec: Sizes of the pair.
        seed: Seed of the random weights.
        stage_mode: Written as ``stagewise.stage_mode``: "prompted" or "native".
        mmproj_n_embd: Output width of the projector; defaults to the text
            model's width. A different value makes a mismatched pair (for tests).
        _omit_model: Metadata keys or tensor names to leave out of the text
            model (for tests of broken files).
        _omit_mmproj: The same for the projector.

    Returns:
        The paths of the two files.

    Raises:
        ValueError: ``stage_mode`` is not one of :data:`STAGE_MODES`.
    """
    if stage_mode not in STAGE_MODES:
        raise ValueError(f"stage_mode must be one of {STAGE_MODES}, not {stage_mode!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pair = TinyPair(
        model=directory / f"{spec.name}-model.gguf",
        mmproj=directory / f"{spec.name}-mmproj.gguf",
    )
    rng = np.random.default_rng(seed)
    _write_text_model(pair.model, spec, rng, stage_mode, _omit_model)
    n_out = spec.n_embd if mmproj_n_embd is None else mmproj_n_embd
    _write_projector(pair.mmproj, spec, rng, n_out, _omit_mmproj)
    return pair
