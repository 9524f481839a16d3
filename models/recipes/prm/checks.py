"""What a PRM's Hugging Face folder and its converted GGUF must be, checked before and after
conversion so that a wrong folder is one line, not a converter traceback.

Which Hugging Face architectures each catalogue family's PRMs are published as, and so which
of llama.cpp's converter classes write them:

* ``qwen2.5-vl`` (VL-PRM): ``Qwen2_5_VLForConditionalGeneration``, written as a ``qwen2vl``
  text model and a ``qwen2.5vl_merger`` projector.
* ``internvl`` (VisualPRM-8B-v1.1): ``InternVLChatModel``; the projector is InternViT's
  (``internvl``), and the text model converts only where the language model
  (``llm_config.architectures``) is Qwen2: llama.cpp's converter has no InternLM2 text model
  for InternVL (its ``tools/mtmd/README.md``), which is why VisualPRM-8B (v1) cannot run.
"""

from __future__ import annotations

import ctypes
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stagewise.models.errors import StagewiseError
from stagewise.models.library.catalogue import CatalogueEntry

__all__ = ["ANSWERS", "ARCHITECTURES", "FolderFacts", "answer_tokens", "check_folder"]

ARCHITECTURES = {"qwen2.5-vl": "Qwen2_5_VLForConditionalGeneration",
                 "internvl": "InternVLChatModel"}
"""The Hugging Face architecture of the PRMs of each catalogue family."""

INTERNVL_LANGUAGE_MODELS = ("Qwen2ForCausalLM",)
"""An InternVL PRM's language models that llama.cpp converts (``Qwen2Model`` strips
InternVL's ``language_model.`` prefix)."""

ANSWERS = ("+", "-")
"""What a PRM answers: the step is right, or wrong."""


@dataclass(frozen=True)
class FolderFacts:
    """What a PRM folder is, read from its ``config.json``.

    Attributes:
        architecture: ``architectures[0]``.
        language_model: An InternVL model's ``llm_config.architectures[0]``; "" otherwise.
        system_message: ``system_message`` in the config, if any (InternVL's inference code
            would send it); "" when absent.
    """

    architecture: str
    language_model: str
    system_message: str


def check_folder(folder: Path, entry: CatalogueEntry) -> FolderFacts:
    """Check that ``folder`` holds the published weights of the PRM ``entry``.

    Raises:
        StagewiseError: No ``config.json`` or weights, another architecture than the entry's
            family publishes, or (InternVL) a language model llama.cpp cannot convert.
    """
    config = _config(folder)
    if not any(folder.glob("*.safetensors")):
        raise StagewiseError(f"{folder}: no weights (*.safetensors); download the whole "
                             f"repository {entry.weights}")
    architecture = _first(config.get("architectures"))
    expected = ARCHITECTURES.get(entry.family)
    if architecture != expected:
        raise StagewiseError(
            f"{folder} holds a {architecture or 'model of no stated architecture'}, not the "
            f"{expected} that {entry.weights} ({entry.id}) is published as")
    language_model = ""
    if entry.family == "internvl":
        llm = config.get("llm_config")
        language_model = _first(llm.get("architectures")) if isinstance(llm, dict) else ""
        if language_model not in INTERNVL_LANGUAGE_MODELS:
            why = (" (VisualPRM-8B v1's): llama.cpp's converter has no InternLM2 text model "
                   "for InternVL" if "InternLM2" in language_model else
                   ": llama.cpp's converter writes an InternVL text model for "
                   + ", ".join(INTERNVL_LANGUAGE_MODELS) + " only")
            raise StagewiseError(f"{folder}: its language model is "
                                 f"{language_model or 'not named in llm_config'}{why}")
    system = config.get("system_message")
    return FolderFacts(architecture, language_model, system if isinstance(system, str) else "")


def _config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StagewiseError(f"{folder}: not a Hugging Face model folder (no config.json)"
                             ) from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise StagewiseError(f"{path} cannot be read: {error}") from error
    if not isinstance(config, dict):
        raise StagewiseError(f"{path} is not a JSON object")
    return config


def _first(value: object) -> str:
    return str(value[0]) if isinstance(value, list) and value else ""


def answer_tokens(model: Path) -> tuple[int, int]:
    """The ids of "+" and "-" in a GGUF's vocabulary (loaded alone, without the weights).

    Each must be one token whose text is exactly the answer: tokenized without a BOS and
    without special-token parsing, as the ``prm`` selection tokenizes it, and spelt back as
    "+" or "-" (a SentencePiece vocabulary may give one token "▁+", which is another).

    Raises:
        StagewiseError: The vocabulary cannot be read, or spells an answer otherwise.
    """
    from llama_cpp import llama_cpp as lc

    from stagewise.models.inference.llama_runtime import init_backend, native_log, reason

    init_backend()
    params = lc.llama_model_default_params()
    params.vocab_only = True
    loaded = lc.llama_model_load_from_file(str(model).encode(), params)
    if not loaded:
        raise StagewiseError(f"{model}: llama.cpp cannot read its vocabulary"
                             + reason(native_log.last_error()))
    try:
        vocab = lc.llama_model_get_vocab(loaded)
        ids = []
        for answer in ANSWERS:
            tokens = _tokenize(lc, vocab, answer)
            spelt = [_piece(lc, vocab, token) for token in tokens]
            if len(tokens) != 1 or spelt != [answer]:
                raise StagewiseError(
                    f"{model.name}: {answer!r} is {len(tokens)} token(s) {spelt} in its "
                    "vocabulary, not the one token a process reward model answers with")
            ids.append(tokens[0])
    finally:
        lc.llama_model_free(loaded)
    return ids[0], ids[1]


def _tokenize(lc: Any, vocab: Any, text: str) -> list[int]:
    raw = text.encode()
    buf = (lc.llama_token * 16)()
    n = lc.llama_tokenize(vocab, raw, len(raw), buf, len(buf), False, False)
    if n < 0:  # a one-character text cannot need more than its bytes
        raise StagewiseError(f"the vocabulary spells {text!r} in {-n} tokens")
    return list(buf[:n])


def _piece(lc: Any, vocab: Any, token: int) -> str:
    buf = ctypes.create_string_buffer(64)
    n = lc.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
    return buf.raw[:max(n, 0)].decode("utf-8", "replace")
