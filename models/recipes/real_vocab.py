"""Random-weight vision-language pairs on real tokenizers and real chat templates.

No real model can be downloaded where the tests run, but the llama-cpp-python source
distribution the LLaVA-CoT recipe already fetches for its converter
(:func:`~models.recipes.llava_cot.converter.converter_source`) ships vocabulary-only GGUFs
of real tokenizers (``models/ggml-vocab-*.gguf``) and real chat templates
(``models/templates/*.jinja``). :func:`real_vocabulary_pair` writes a tiny random-weight
``llama`` text model with one of those tokenizers copied key by key, the matching
template, and a LLaVA ``mlp`` projector, so that every path a real model takes through
tokenizing, templating, stage tags and sampling runs at real vocabulary size.

Written pairs are kept in the cache folder, keyed by everything that shapes them, so a
test run after the first reuses them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from models.gguf_writer import CopiedTokenizer
from models.paths import cache_dir
from models.recipes.llava_cot.converter import converter_source, llama_cpp_version
from models.tiny_vlm import TinyPair, TinySpec, write_tiny_pair

__all__ = ["REAL_TINY", "REAL_VOCABULARIES", "RealVocabulary", "real_vocabulary_pair"]


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
    key = hashlib.sha256(repr((vocab, spec, stage_mode, seed, llama_cpp_version())).encode()
                         ).hexdigest()[:16]
    folder = (cache or cache_dir()) / "real-vocab-pairs" / f"{name}-{spec.name}-{key}"
    pair = TinyPair(folder / f"{spec.name}-model.gguf", folder / f"{spec.name}-mmproj.gguf")
    if pair.model.is_file() and pair.mmproj.is_file():
        return pair
    vocab_file, template_file = vocab.files(source)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write_tiny_pair(staging, spec, seed=seed, stage_mode=stage_mode,
                        tokenizer=CopiedTokenizer.from_gguf(vocab_file),
                        chat_template=template_file.read_text(encoding="utf-8"))
        try:
            os.replace(staging, folder)  # whichever concurrent run renames first wins
        except OSError:
            if not pair.model.is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return pair
