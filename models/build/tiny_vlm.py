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

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from stagewise.models.build.bpe import byte_symbols, learn_merges, word_counts
from stagewise.models.build.gguf_writer import (
    TOKEN_CONTROL,
    TOKEN_NORMAL,
    TOKEN_USER_DEFINED,
    CopiedTokenizer,
    TextHyper,
    VisionHyper,
    Vocabulary,
    write_projector,
    write_text_model,
)

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
def _vocab() -> tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...]]:
    merges = learn_merges(word_counts(_CORPUS), _N_MERGES)
    tokens = list(byte_symbols())
    tokens += [a + b for a, b in merges]
    types = [TOKEN_NORMAL] * len(tokens)
    tokens += [IM_START_TOKEN, EOS_TOKEN, BOS_TOKEN]
    types += [TOKEN_CONTROL] * 3
    tokens += STAGE_TAGS
    types += [TOKEN_USER_DEFINED] * len(STAGE_TAGS)
    if len(set(tokens)) != len(tokens):  # pragma: no cover - guards the corpus
        raise AssertionError("duplicate tokens in the tiny vocabulary")
    return tuple(tokens), tuple(types), tuple(f"{a} {b}" for a, b in merges)


def _quiet_ids() -> list[int]:
    """Tokens the random model should not emit: all but printable ASCII and newline.

    That keeps generated text valid UTF-8 and free of control tokens, stage tags
    and the end-of-turn token, so generation always runs to its token limit.
    """
    tokens, types, _ = _vocab()
    allowed = {byte_symbols()[b] for b in [*range(0x20, 0x7F), 0x0A]}
    quiet = []
    for i, (text, kind) in enumerate(zip(tokens, types, strict=True)):
        if kind != TOKEN_NORMAL or not set(text) <= allowed:
            quiet.append(i)
    return quiet


def _copied_quiet_ids(tokenizer: CopiedTokenizer) -> list[int]:
    """A real tokenizer's tokens the random model should not emit: all but normal tokens
    of printable ASCII (in GPT-2's byte spelling for byte-level BPE, with SentencePiece's
    "▁" for a space otherwise)."""
    byte_level = tokenizer.value("model") == "gpt2"
    printable = {chr(b) for b in [*range(0x20, 0x7F), 0x0A]}
    if byte_level:
        printable = {byte_symbols()[ord(c)] for c in printable}
    else:
        printable.add("\u2581")
    return [i for i, (text, kind) in enumerate(zip(tokenizer.tokens, tokenizer.types,
                                                   strict=True))
            if kind != TOKEN_NORMAL or not text or not set(text) <= printable]


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


def _tiny_vocabulary() -> Vocabulary:
    tokens, types, merges = _vocab()
    return Vocabulary(tokens, types, merges, BOS_TOKEN, EOS_TOKEN)


def _text_hyper(spec: TinySpec) -> TextHyper:
    return TextHyper(spec.n_embd, spec.n_layer, spec.n_head, spec.n_head_kv, spec.n_ff,
                     spec.n_ctx_train)


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


def _projector_tensors(
    spec: TinySpec, rng: np.random.Generator, n_out: int
) -> Iterable[tuple[str, np.ndarray]]:
    v = spec.v_embd
    n_pos = spec.n_image_tokens  # no class embedding

    def lin(n_out_: int, n_in: int, gain: float = 1.0) -> np.ndarray:
        return (rng.standard_normal((n_out_, n_in)) * (gain / np.sqrt(n_in))).astype(np.float32)

    def vec(n: int, mean: float = 0.0, std: float = 0.02) -> np.ndarray:
        return (mean + std * rng.standard_normal(n)).astype(np.float32)

    p = spec.patch_size
    # conv kernel: ggml ne [p, p, 3, v] == numpy (v, 3, p, p)
    yield "v.patch_embd.weight", (rng.standard_normal((v, 3, p, p)) / np.sqrt(3 * p * p)).astype(
        np.float32)
    yield "v.patch_embd.bias", vec(v)
    yield "v.position_embd.weight", (0.5 * rng.standard_normal((n_pos, v))).astype(np.float32)
    yield "v.pre_ln.weight", vec(v, 1.0)
    yield "v.pre_ln.bias", vec(v)
    for i in range(spec.v_layer):
        b = f"v.blk.{i}"
        for part in ("attn_q", "attn_k", "attn_v", "attn_out"):
            yield f"{b}.{part}.weight", lin(v, v)
            yield f"{b}.{part}.bias", vec(v)
        yield f"{b}.ln1.weight", vec(v, 1.0)
        yield f"{b}.ln1.bias", vec(v)
        yield f"{b}.ln2.weight", vec(v, 1.0)
        yield f"{b}.ln2.bias", vec(v)
        yield f"{b}.ffn_up.weight", lin(spec.v_ff, v)
        yield f"{b}.ffn_up.bias", vec(spec.v_ff)
        yield f"{b}.ffn_down.weight", lin(v, spec.v_ff)
        yield f"{b}.ffn_down.bias", vec(v)
    yield "mm.0.weight", lin(n_out, v)
    yield "mm.0.bias", vec(n_out)
    yield "mm.2.weight", lin(n_out, n_out, 3.0)
    yield "mm.2.bias", vec(n_out)


def _vision_hyper(spec: TinySpec, n_out: int) -> VisionHyper:
    return VisionHyper(spec.image_size, spec.patch_size, spec.v_embd, spec.v_layer, spec.v_head,
                       spec.v_ff, n_out)


def write_tiny_pair(
    directory: Path | str,
    spec: TinySpec = TINY,
    *,
    seed: int = 0,
    stage_mode: str = "prompted",
    mmproj_n_embd: int | None = None,
    tokenizer: CopiedTokenizer | None = None,
    chat_template: str | None = None,
    _omit_model: Collection[str] = (),
    _omit_mmproj: Collection[str] = (),
    _projector_type: str = "mlp",
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
        tokenizer: A real tokenizer to use instead of the tiny one (see
            :func:`real_vocabulary_pair`); its control tokens and every token that is
            not plain ASCII text are kept quiet, as the tiny tokenizer's are.
        chat_template: The Jinja chat template; ChatML by default.
        _omit_model: Metadata keys or tensor names to leave out of the text
            model (for tests of broken files).
        _omit_mmproj: The same for the projector.
        _projector_type: The projector's declared type; another than "mlp" does not match
            its tensors (for tests of a projector only libmtmd refuses).

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
    vocab: Vocabulary | CopiedTokenizer = tokenizer or _tiny_vocabulary()
    quiet = _quiet_ids() if tokenizer is None else _copied_quiet_ids(tokenizer)
    write_text_model(
        pair.model, _text_hyper(spec), vocab,
        _text_tensors(spec, rng, len(vocab.tokens), quiet),
        name=f"stagewise-{spec.name}-random", chat_template=chat_template or CHATML_TEMPLATE,
        file_type=1 if spec.f16 else 0, extra=[("stagewise.stage_mode", stage_mode)],
        omit=_omit_model,
    )
    n_out = spec.n_embd if mmproj_n_embd is None else mmproj_n_embd
    write_projector(pair.mmproj, _vision_hyper(spec, n_out), _projector_tensors(spec, rng, n_out),
                    name=f"stagewise-{spec.name}-random-mmproj", omit=_omit_mmproj,
                    projector_type=_projector_type)
    return pair
