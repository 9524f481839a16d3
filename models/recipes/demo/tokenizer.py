"""The demo model's tokenizer and prompts.

The vocabulary is a byte-level BPE learnt from the training texts, with ChatML's control
tokens and the eight stage tags as single tokens. Text is tokenized by llama.cpp itself,
from a vocabulary-only GGUF, so training sees exactly the ids the app will feed the model;
prompts are rendered by the same family adapter the engine uses.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stagewise.models.build.bpe import byte_symbols, learn_merges, word_counts
from stagewise.models.build.gguf_writer import (
    TOKEN_CONTROL,
    TOKEN_NORMAL,
    TOKEN_USER_DEFINED,
    TextHyper,
    Vocabulary,
    write_text_model,
)
from stagewise.models.build.tiny_vlm import (
    BOS_TOKEN,
    CHATML_TEMPLATE,
    EOS_TOKEN,
    IM_START_TOKEN,
    STAGE_TAGS,
)
from stagewise.models.inference.families.registry import family_named

MEDIA_MARKER = "<__media__>"  # libmtmd's default marker
CHAT_TEMPLATE = CHATML_TEMPLATE


def build_vocabulary(texts: Iterable[str], n_merges: int = 2000) -> Vocabulary:
    """Learns merges from ``texts`` and adds the control tokens and stage tags."""
    merges = learn_merges(word_counts(texts), n_merges)
    tokens = list(byte_symbols()) + [a + b for a, b in merges]
    types = [TOKEN_NORMAL] * len(tokens)
    tokens += [IM_START_TOKEN, EOS_TOKEN, BOS_TOKEN]
    types += [TOKEN_CONTROL] * 3
    tokens += STAGE_TAGS
    types += [TOKEN_USER_DEFINED] * len(STAGE_TAGS)
    return Vocabulary(tuple(tokens), tuple(types), tuple(f"{a} {b}" for a, b in merges),
                      BOS_TOKEN, EOS_TOKEN)


def vocabulary_gguf(vocab: Vocabulary, path: Path) -> Path:
    """Writes a GGUF holding only ``vocab`` (for llama.cpp's vocab-only load)."""
    hyper = TextHyper(n_embd=32, n_layer=1, n_head=1, n_head_kv=1, n_ff=32, n_ctx_train=2048)
    write_text_model(path, hyper, vocab, [], name="stagewise-demo-vocab",
                     chat_template=CHAT_TEMPLATE, file_type=0)
    return path


class Tokenizer:
    """llama.cpp's own tokenizer for a vocabulary (special tokens parsed in text)."""

    def __init__(self, vocab: Vocabulary) -> None:
        import llama_cpp  # loaded here: reading sizes or vocabularies needs no llama.cpp

        self.vocab = vocab
        self._dir = tempfile.TemporaryDirectory(prefix="stagewise-vocab-")
        path = vocabulary_gguf(vocab, Path(self._dir.name) / "vocab.gguf")
        self._llama = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
        self.eos = vocab.id(vocab.eos)

    def encode(self, text: str) -> list[int]:
        return self._llama.tokenize(text.encode(), add_bos=False, special=True)

    def decode(self, ids: Iterable[int]) -> str:
        return self._llama.detokenize(list(ids), special=True).decode("utf-8", "replace")

    def close(self) -> None:
        self._llama.close()
        self._dir.cleanup()


@dataclass(frozen=True)
class PromptParts:
    """A rendered user turn split where the image goes (``before`` is empty without one)."""

    before: str
    after: str
    with_image: bool


def prompt_parts(user_text: str, *, with_image: bool = True,
                 earlier: Sequence[tuple[str, str]] = (), system: str = "") -> PromptParts:
    """The prompt the engine renders for this model, split at the media marker.

    ``earlier`` turns (a follow-up's earlier questions and the conclusions that go back in,
    oldest first) and a ``system`` message are rendered as the engine renders them.
    """
    prompt = family_named("chatml").render_prompt(CHAT_TEMPLATE, user_text, MEDIA_MARKER,
                                                  with_image=with_image, earlier=earlier,
                                                  system=system)
    if not with_image:
        return PromptParts("", prompt, False)
    before, _, after = prompt.partition(MEDIA_MARKER)
    return PromptParts(before, after, True)
