"""A loaded model's vocabulary: text to tokens and back, and the tokens that end a turn.

:class:`Tokenizer` works on the vocabulary of a model the engine loaded
(``llama_model_get_vocab``); once that model is freed it refuses to run.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

from llama_cpp import llama_cpp as lc

from stagewise.models.errors import EngineError
from stagewise.models.inference.native_owners import ModelOwner

__all__ = ["Tokenizer"]


class Tokenizer:
    """Tokenizes text with a model's vocabulary.

    Args:
        model: The loaded model whose vocabulary it is.
        stop_texts: The texts that end the assistant's turn in the model's family
            (:attr:`~stagewise.models.inference.families.FamilyAdapter.stop_tokens`).

    Attributes:
        n_vocab: Tokens in the vocabulary.
        turn_end: The ``stop_texts`` that are single tokens of this vocabulary.
    """

    def __init__(self, model: ModelOwner, stop_texts: Sequence[str]) -> None:
        self._model = model
        self._vocab = lc.llama_model_get_vocab(model.handle)
        self.n_vocab = int(lc.llama_vocab_n_tokens(self._vocab))
        self._pieces: dict[int, bytes] = {}
        self.turn_end = self.turn_end_tokens(stop_texts)

    @property
    def vocab(self) -> lc.llama_vocab_p:
        """The vocabulary (samplers take it).

        Raises:
            EngineError: The model was freed.
        """
        if self._model.closed:
            raise EngineError("the model is closed")
        return self._vocab

    def tokenize(self, text: str, *, add_special: bool = False,
                 special: bool = True) -> list[int]:
        """Tokenize text, parsing control tokens (chat markers, stage tags) unless
        ``special`` is False."""
        raw = text.encode("utf-8")
        cap = len(raw) + 16
        buf = (lc.llama_token * cap)()
        n = lc.llama_tokenize(self.vocab, raw, len(raw), buf, cap, add_special, special)
        if n < 0:
            cap = -n
            buf = (lc.llama_token * cap)()
            n = lc.llama_tokenize(self.vocab, raw, len(raw), buf, cap, add_special, special)
        if n < 0:
            raise EngineError("llama.cpp could not tokenize the text")
        return list(buf[:n])

    def tokenize_plain(self, text: str, plain: Sequence[str] = (), *,
                       add_special: bool = False) -> list[int]:
        """Tokenize ``text`` with its control tokens, except that every occurrence of a
        ``plain`` text is tokenized as written: a question containing ``<|im_end|>`` or
        ``<start_of_turn>`` cannot end the user's turn.

        Only ``plain`` texts that would read as control tokens are looked for: a short text
        with none in it (an earlier answer such as "turn") must not split the template's
        own control tokens (``<end_of_turn>``) where it occurs inside them."""
        wanted = sorted({p for p in plain
                         if p and self.tokenize(p) != self.tokenize(p, special=False)},
                        key=len, reverse=True)
        tokens: list[int] = self.tokenize("", add_special=True) if add_special else []
        rest = text
        while rest:
            found = [(rest.find(p), -len(p), p) for p in wanted if p in rest]
            if not found:
                tokens += self.tokenize(rest)
                break
            at, _, piece = min(found)
            if at:
                tokens += self.tokenize(rest[:at])
            tokens += self.tokenize(piece, special=False)
            rest = rest[at + len(piece):]
        return tokens

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for (special tokens render as their text)."""
        cached = self._pieces.get(token)
        if cached is not None:
            return cached
        buf = ctypes.create_string_buffer(64)
        n = lc.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = lc.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        out = buf.raw[: max(n, 0)]
        self._pieces[token] = out
        return out

    def is_eog(self, token: int) -> bool:
        """Whether ``token`` ends the assistant's turn: one of llama.cpp's end-of-generation
        tokens, or one of the family's end-of-turn tokens (:attr:`turn_end`)."""
        return token in self.turn_end or bool(lc.llama_vocab_is_eog(self.vocab, token))

    def turn_end_tokens(self, stop_texts: Sequence[str]) -> frozenset[int]:
        """The end-of-turn texts that are single tokens of this vocabulary.

        llama.cpp recognises the usual ones by their text, but a GGUF whose converter
        marked none of them still stops where its family's template ends a turn.
        """
        found = set()
        for text in stop_texts:
            ids = self.tokenize(text)
            if len(ids) == 1 and self.piece(ids[0]).decode("utf-8", "replace") == text:
                found.add(ids[0])
        return frozenset(found)

    def template_specials(self) -> tuple[str, str]:
        """What ``{{ bos_token }}`` and ``{{ eos_token }}`` render as in chat templates.

        BOS renders empty when the tokenizer adds it itself (libmtmd tokenizes prompts
        with ``add_special``), so that it is not doubled.
        """
        def text(token: int) -> str:
            return self.piece(token).decode("utf-8", "replace") if token >= 0 else ""

        adds_bos = bool(lc.llama_vocab_get_add_bos(self.vocab))
        bos = "" if adds_bos else text(lc.llama_vocab_bos(self.vocab))
        return bos, text(lc.llama_vocab_eos(self.vocab))
