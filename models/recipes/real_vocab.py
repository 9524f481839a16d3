"""Random-weight vision-language pairs on real tokenizers and real chat templates.

No real model can be downloaded where the tests run, but the llama-cpp-python source
distribution the LLaVA-CoT recipe already fetches for its converter
(:func:`~stagewise.models.recipes.llava_cot.converter.converter_source`) ships vocabulary-only GGUFs
of real tokenizers (``models/ggml-vocab-*.gguf``) and real chat templates
(``models/templates/*.jinja``). :func:`real_vocabulary_pair` writes a tiny random-weight
``llama`` text model with one of those tokenizers copied key by key, the matching
template, and a LLaVA ``mlp`` projector, so that every path a real model takes through
tokenizing, templating, stage tags and sampling runs at real vocabulary size.

:func:`qwen_real_vocabulary_pair` gives the catalogue's commonest families their own
shapes: the recipe's tiny Qwen2.5-VL (a ``qwen2vl`` text model with M-RoPE and a
``qwen2.5vl_merger`` projector) or Qwen3-VL (``qwen3vl``, deepstack, ``qwen3vl_merger``),
converted by llama.cpp's converter, with Qwen2's real tokenizer (which Qwen3-VL shares)
and the family's template put in place of the tiny learnt one. Gemma 4's vocabulary does
not fit Gemma 3's template and projector, so it runs on the LLaVA shape.

Written pairs are kept in the cache folder, keyed by everything that shapes them, so a
test run after the first reuses them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from stagewise.models.build.gguf_writer import CopiedTokenizer
from stagewise.models.build.tiny_vlm import TinyPair, TinySpec, write_tiny_pair
from stagewise.models.disk.paths import cache_dir
from stagewise.models.recipes.llava_cot.converter import converter_source, llama_cpp_version

__all__ = ["QWEN_SHAPES", "REAL_TINY", "REAL_VOCABULARIES", "RealVocabulary",
           "cached_folder", "qwen2_hf_tokenizer", "qwen_real_vocabulary_pair",
           "real_vocabulary_pair", "with_tokenizer"]


@dataclass(frozen=True)
class RealVocabulary:
    """A real tokenizer and the chat template of a model that uses it.

    Attributes:
        name: The name in ``ggml-vocab-<name>.gguf``.
        template: The file in llama.cpp's ``models/templates/``.
        family: The Stagewise family adapter its template selects.
        end_of_turn: The text of the token that ends an assistant turn.
        about: Which real models use it.
    """

    name: str
    template: str
    family: str
    end_of_turn: str
    about: str

    def files(self, source: Path | None = None) -> tuple[Path, Path]:
        """The vocabulary GGUF and the template, fetched with the converter on first use."""
        folder = source or converter_source()
        return (folder / "models" / f"ggml-vocab-{self.name}.gguf",
                folder / "models" / "templates" / self.template)


REAL_VOCABULARIES: dict[str, RealVocabulary] = {v.name: v for v in (
    RealVocabulary("qwen2", "MiMo-VL.jinja", "chatml", "<|im_end|>",
                   "Qwen2 byte-level BPE, 151,936 tokens (Qwen2.5-VL, Qwen3-VL); the "
                   "template of MiMo-VL, a Qwen2.5-VL fine-tune"),
    RealVocabulary("llama-bpe", "meta-llama-Llama-3.2-3B-Instruct.jinja", "generic",
                   "<|eot_id|>", "Llama 3 byte-level BPE, 128,256 tokens (the original "
                   "LLaVA-CoT 11B, Llama-3.2-Vision); Llama 3.2 Instruct's template"),
    RealVocabulary("gemma-4", "google-gemma-4-31B-it.jinja", "generic", "<turn|>",
                   "Gemma 4's SentencePiece-style vocabulary, 262,144 tokens; Gemma 4 "
                   "it's template"),
)}
"""The real vocabularies the tests and ``bench/beam.py --vocab`` run on."""

REAL_TINY = TinySpec(name="real", n_embd=64, n_layer=2, n_head=4, n_head_kv=2, n_ff=128,
                     n_ctx_train=4096, image_size=32, patch_size=8, v_embd=32, v_layer=2,
                     v_head=2, v_ff=64)
"""Small enough that the vocabulary dominates: about 2 × 152k × 64 weights in F16."""


def real_vocabulary_pair(name: str, spec: TinySpec = REAL_TINY, *,
                         stage_mode: str = "prompted", seed: int = 0,
                         cache: Path | None = None, source: Path | None = None) -> TinyPair:
    """A random-weight pair on the real vocabulary ``name``, written once and cached.

    Args:
        name: A key of :data:`REAL_VOCABULARIES`.
        spec: The model's sizes.
        stage_mode: "prompted" or "native".
        seed: Seed of the random weights.
        cache: Where written pairs are kept; the cache folder by default.
        source: llama.cpp's source folder; fetched with the converter by default.

    Raises:
        KeyError: ``name`` is not a known real vocabulary.
        ConversionError: llama.cpp's source could not be fetched.
    """
    vocab = REAL_VOCABULARIES[name]

    def write(folder: Path) -> None:
        vocab_file, template_file = vocab.files(source)
        write_tiny_pair(folder, spec, seed=seed, stage_mode=stage_mode,
                        tokenizer=CopiedTokenizer.from_gguf(vocab_file),
                        chat_template=template_file.read_text(encoding="utf-8"))

    return _cached(f"{name}-{spec.name}", (vocab, spec, stage_mode, seed), cache,
                   TinyPair(Path(f"{spec.name}-model.gguf"), Path(f"{spec.name}-mmproj.gguf")),
                   write)


QWEN_SHAPES = ("qwen2.5-vl", "qwen3-vl")
"""The family shapes :func:`qwen_real_vocabulary_pair` builds."""


def qwen_real_vocabulary_pair(family: str = "qwen2.5-vl", *, cache: Path | None = None,
                              source: Path | None = None) -> TinyPair:
    """The recipe's tiny random Qwen2.5-VL or Qwen3-VL, converted, on Qwen2's real tokenizer.

    Needs the recipe's ``train`` extra (torch and transformers build the tiny model).

    Raises:
        ValueError: ``family`` is not one of :data:`QWEN_SHAPES`.
    """
    from stagewise.models.recipes.llava_cot import tiny_qwen
    from stagewise.models.recipes.llava_cot.converter import convert

    if family not in QWEN_SHAPES:
        raise ValueError(f"family must be one of {QWEN_SHAPES}, not {family!r}")
    qwen3 = family == "qwen3-vl"
    build = tiny_qwen.build_tiny_qwen3vl if qwen3 else tiny_qwen.build_tiny_qwen25vl
    template = tiny_qwen.qwen3vl_chat_template() if qwen3 else tiny_qwen.chat_template()
    vocab = REAL_VOCABULARIES["qwen2"]
    stem = family.replace(".", "")

    def write(folder: Path) -> None:
        converter = source or converter_source()
        work = folder / "work"
        hf = build(work / "hf", ["How many red circles are there?",
                                 "<SUMMARY> I count them. </SUMMARY>"])
        tiny = convert(hf, work / "tiny-f16.gguf", source=converter,
                       pre_tokenizer=tiny_qwen.TINY_PRE_TOKENIZER)
        convert(hf, folder / f"{stem}-mmproj.gguf", source=converter, mmproj=True)
        with_tokenizer(tiny, vocab.files(converter)[0], template,
                       folder / f"{stem}-model.gguf")
        shutil.rmtree(work)

    return _cached(f"qwen2-{stem}", (vocab, family), cache,
                   TinyPair(Path(f"{stem}-model.gguf"), Path(f"{stem}-mmproj.gguf")), write)


def qwen2_hf_tokenizer(chat_template: str, source: Path | None = None) -> Any:
    """Qwen2's real tokenizer as a ``transformers`` tokenizer, for a Hugging Face folder.

    Rebuilt from ``ggml-vocab-qwen2.gguf``: its 151,643 byte-level BPE tokens (ids as there)
    and merges (in rank order), NFC normalization and Qwen2's pre-tokenizer, then Qwen2.5-VL's
    special tokens (:data:`~stagewise.models.recipes.llava_cot.tiny_qwen.SPECIAL_TOKENS`)
    from id 151,643 on. It tokenizes llama.cpp's own test texts for that vocabulary
    (``ggml-vocab-qwen2.gguf.inp``) to the ids it expects (``.out``), and llama.cpp's
    converter recognises its pre-tokenizer by hash as ``qwen2``, as it does a real Qwen2.5-VL
    download's (both checked by the tests).

    Args:
        chat_template: The chat template to give it.
        source: llama.cpp's source folder; fetched with the converter by default.
    """
    from tokenizers import AddedToken, Tokenizer, models, normalizers

    from stagewise.models.recipes.llava_cot import tiny_qwen

    reader = gguf.GGUFReader(str(REAL_VOCABULARIES["qwen2"].files(source)[0]))
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    kinds = reader.fields["tokenizer.ggml.token_type"].contents()
    merges = [tuple(m.split(" ", 1)) for m in reader.fields["tokenizer.ggml.merges"].contents()]
    vocab = {token: i for i, (token, kind) in enumerate(zip(tokens, kinds, strict=True))
             if kind == gguf.TokenType.NORMAL}
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    bpe.normalizer = normalizers.NFC()
    tiny_qwen.qwen2_pipeline(bpe)
    bpe.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in tiny_qwen.SPECIAL_TOKENS])
    return tiny_qwen.qwen_tokenizer(bpe, chat_template)


def with_tokenizer(model: Path, vocab_file: Path, chat_template: str, out: Path,
                   seed: int = 0) -> Path:
    """Copy a text model GGUF with another tokenizer: every ``tokenizer.*`` key from
    ``vocab_file``, the template, and random token-embedding and output rows for its size.
    """
    reader = gguf.GGUFReader(str(model))
    tokenizer = CopiedTokenizer.from_gguf(vocab_file)
    n_vocab = len(tokenizer.tokens)
    arch = str(reader.fields["general.architecture"].contents())
    writer = gguf.GGUFWriter(str(out), arch)
    for key, field in reader.fields.items():
        if key.startswith(("GGUF.", "tokenizer.", "general.architecture")):
            continue
        kind = field.types[0]
        item = field.types[1] if kind == gguf.GGUFValueType.ARRAY else None
        value = n_vocab if key == f"{arch}.vocab_size" else field.contents()
        writer.add_key_value(key, value, kind, item)
    for key, value, kind, item in tokenizer.fields:
        writer.add_key_value(key, value, kind, item)
    writer.add_chat_template(chat_template)
    rng = np.random.default_rng(seed)
    for tensor in reader.tensors:
        data = np.asarray(tensor.data)
        if tensor.name in ("token_embd.weight", "output.weight"):
            rows = rng.standard_normal((n_vocab, data.shape[-1]), dtype=np.float32)
            data = (rows * float(np.std(data.astype(np.float32)))).astype(data.dtype)
        writer.add_tensor(tensor.name, data, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _cached(name: str, shape: object, cache: Path | None, files: TinyPair,
            write: Callable[[Path], None]) -> TinyPair:
    """The pair written once by ``write(folder)`` into a cache folder keyed by ``shape``."""
    folder = cached_folder(name, shape, write, cache, marker=files.model)
    return TinyPair(folder / files.model, folder / files.mmproj)


def cached_folder(name: str, shape: object, write: Callable[[Path], None],
                  cache: Path | None = None, *, marker: Path = Path("config.json")) -> Path:
    """A folder written once by ``write(folder)`` into the cache, keyed by ``shape`` and the
    llama-cpp-python version; whole once ``marker`` (a path inside it) exists."""
    key = hashlib.sha256(repr((shape, llama_cpp_version())).encode()).hexdigest()[:16]
    folder = (cache or cache_dir()) / "real-vocab-pairs" / f"{name}-{key}"
    if (folder / marker).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write(staging)
        try:
            os.replace(staging, folder)  # whichever concurrent run renames first wins
        except OSError:
            if not (folder / marker).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
