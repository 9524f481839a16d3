"""Build one real-shape pair: random weights, llama.cpp's converter, the real vocabulary,
quantized as the catalogue ships it.

The steps, one model at a time, each intermediate deleted as soon as the next step has
read it (a 4B model passes through about 9 GB of safetensors and 8 GB of F16 GGUF):

1. transformers' random initialisation at the published configuration, written shard by
   shard (:func:`~stagewise.models.recipes.real_shape.checkpoint.write_random_checkpoint`),
   with a small placeholder tokenizer and the image processor's configuration;
2. llama.cpp's converter (the one the installed llama-cpp-python vendors): the text model
   to F16, the projector to the catalogue's type (Q8_0, or F16 for Gemma 3);
3. ``llama-quantize`` (built from the same sources,
   :func:`~stagewise.models.build.llama_tools.llama_tool`) to Q4_K_M;
4. the real tokenizer and chat template copied in
   (:func:`~stagewise.models.recipes.real_shape.vocab.put_tokenizer`).

The pair is kept in ``real-shape/`` in the cache folder, keyed by the shape and the
llama.cpp version, and reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stagewise.models.disk.paths import cache_dir
from stagewise.models.errors import StagewiseError
from stagewise.models.recipes.real_shape.shapes import Shape

__all__ = ["RealPair", "build_pair", "pair_folder"]

PLACEHOLDER_TEXTS = ("How many red circles are there?",
                     "<SUMMARY> I count the circles. </SUMMARY>",
                     "<CAPTION> Three red circles and a square. </CAPTION>")


@dataclass(frozen=True)
class RealPair:
    """A built pair: the quantized text model and its projector."""

    model: Path
    mmproj: Path


def pair_folder(shape: Shape, cache: Path | None = None) -> Path:
    """Where ``shape``'s pair is kept."""
    from stagewise.models.recipes.llava_cot.converter import llama_cpp_version

    key = hashlib.sha256(repr((shape, llama_cpp_version(), 1)).encode()).hexdigest()[:12]
    return (cache or cache_dir()) / "real-shape" / f"{shape.name}-{key}"


def build_pair(shape: Shape, *, cache: Path | None = None, source: Path | None = None,
               log: Callable[[str], None] = lambda _line: None) -> RealPair:
    """The pair of ``shape``, built on first use (minutes to an hour; see the module).

    Args:
        shape: What to build.
        cache: The cache folder; the user's by default.
        source: llama.cpp's converter folder; fetched with pip by default.
        log: Called with each step.

    Raises:
        StagewiseError: The converter, the quantizer or the tokenizer could not be had,
            or a step failed.
    """
    from stagewise.models.recipes.llava_cot.converter import converter_source

    folder = pair_folder(shape, cache)
    pair = RealPair(folder / f"{shape.name}-{shape.quant}.gguf",
                    folder / f"mmproj-{shape.name}-{shape.mmproj_type}.gguf")
    if pair.model.is_file() and pair.mmproj.is_file():
        return pair
    converter = source or converter_source()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        _build(shape, staging, converter, log)
        (staging / "shape.json").write_text(json.dumps(
            {"shape": shape.name, "catalogue_id": shape.catalogue_id,
             "config_source": shape.source, "vocab": shape.vocab}, indent=1) + "\n",
            encoding="utf-8")
        try:
            os.replace(staging, folder)
        except OSError:
            if not pair.model.is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return pair


def _build(shape: Shape, out: Path, converter: Path, log: Callable[[str], None]) -> None:
    from stagewise.models.recipes.llava_cot.converter import convert
    from stagewise.models.recipes.real_shape.checkpoint import write_random_checkpoint
    from stagewise.models.recipes.real_shape.vocab import put_tokenizer, real_tokenizer

    tokenizer, template = real_tokenizer(shape.vocab, converter)  # fails early if missing
    work = out / "work"
    hf = work / "hf"
    log(f"{shape.name}: random weights at the published shape ({shape.source})")
    write_random_checkpoint(shape.architecture, shape.config, hf, rename=_renamer(shape))
    pre_tokenizer = _placeholder_tokenizer(shape, hf)
    (hf / "preprocessor_config.json").write_text(json.dumps(shape.processor, indent=1),
                                                 encoding="utf-8")
    (hf / "processor_config.json").write_text(json.dumps(
        {k: v for k, v in shape.processor.items() if k in ("image_seq_length",
                                                             "processor_class")}),
        encoding="utf-8")
    log(f"{shape.name}: llama.cpp's converter, text model to F16")
    f16 = convert(hf, work / "text-f16.gguf", source=converter, pre_tokenizer=pre_tokenizer)
    log(f"{shape.name}: llama.cpp's converter, projector to {shape.mmproj_type}")
    mmproj = out / f"mmproj-{shape.name}-{shape.mmproj_type}.gguf"
    convert(hf, mmproj, source=converter, mmproj=True, outtype=shape.mmproj_type)
    shutil.rmtree(hf)
    log(f"{shape.name}: llama-quantize to {shape.quant}")
    quantized = _quantize(f16, work / f"text-{shape.quant}.gguf", shape.quant)
    f16.unlink()
    log(f"{shape.name}: the real tokenizer and chat template ({shape.vocab})")
    put_tokenizer(quantized, tokenizer, template, out / f"{shape.name}-{shape.quant}.gguf")
    shutil.rmtree(work)


def _renamer(shape: Shape) -> Callable[[str], str]:
    """Gemma 3's vision tower as the published checkpoints name it (see ``tiny_gemma``)."""
    if shape.architecture != "Gemma3ForConditionalGeneration":
        return lambda name: name
    from stagewise.models.recipes.llava_cot.tiny_gemma import HUB_VISION, OWN_VISION

    return lambda name: (HUB_VISION + name[len(OWN_VISION):]
                         if name.startswith(OWN_VISION) else name)


def _placeholder_tokenizer(shape: Shape, hf: Path) -> str | None:
    """Write the small learnt tokenizer the converter reads (the real one goes in after);
    the pre-tokenizer to name for it (None: SentencePiece has none)."""
    if shape.architecture == "Gemma3ForConditionalGeneration":
        from stagewise.models.recipes.llava_cot.tiny_gemma import IMAGE_TOKEN, _sentencepiece

        (hf / "tokenizer.model").write_bytes(_sentencepiece(PLACEHOLDER_TEXTS * 50, 400))
        image_token = shape.config["image_token_index"]
        (hf / "added_tokens.json").write_text(json.dumps({IMAGE_TOKEN: image_token}),
                                              encoding="utf-8")
        return None
    from stagewise.models.recipes.llava_cot import tiny_qwen

    tiny_qwen._tokenizer(PLACEHOLDER_TEXTS, 400, "").save_pretrained(hf)
    return tiny_qwen.TINY_PRE_TOKENIZER


def _quantize(source: Path, dest: Path, quant: str) -> Path:
    """``llama-quantize source dest quant``, built from the vendored sources."""
    from stagewise.models.build.llama_tools import llama_tool

    binary = llama_tool("llama-quantize")
    done = subprocess.run([str(binary), str(source), str(dest), quant],
                          capture_output=True, text=True, errors="replace", check=False)
    if done.returncode != 0 or not dest.is_file():
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-10:])
        raise StagewiseError(f"llama-quantize {source.name} {quant} failed:\n{tail}")
    return dest
