"""The llama.cpp engine: one text model, its projector, and one context with many sequences.

This is a thin owner of native handles over the low-level bindings
(``llama_cpp.llama_cpp`` and ``llama_cpp.mtmd_cpp``). It knows nothing of stages or
beams; :mod:`stagewise.models.reasoning.search` drives it. One thread at a time may use an engine.

Sequences share one unified KV cache: a prompt evaluated once into a sequence can be
forked into others with :meth:`Engine.copy_seq` at no cost, and tokens of many
sequences decode together in one :meth:`Engine.decode` call.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from llama_cpp import llama_cpp as lc
from llama_cpp import mtmd_cpp as mtmd

from stagewise.models.errors import Cancelled, EngineError
from stagewise.models.inference.chat_template import ChatTemplateError
from stagewise.models.inference.cpu_buffers import (
    WeightBuffers,
    choose_weight_buffers,
    parse_weight_buffers,
)
from stagewise.models.inference.encode_abort import EncodeAbort
from stagewise.models.inference.engine_settings import (
    AUTO_CTX,
    FALLBACK_CTX,
    EngineSettings,
    EngineStats,
    default_threads,
)
from stagewise.models.inference.families import GENERIC, FamilyAdapter, detect_family
from stagewise.models.inference.families.base import chat_template
from stagewise.models.inference.gguf_check import check_pair
from stagewise.models.inference.llama_runtime import (
    apply_builtin_template,
    context_params,
    init_backend,
    native_log,
    projector_params,
    reason,
)
from stagewise.models.inference.mtmd_prompt import Bitmap, TokenizedPrompt, split_at_image
from stagewise.models.inference.stage_mode import STAGE_MODE_KEY, StageMode

log = logging.getLogger("stagewise.llama")

MIN_CTX = 256  # the smallest context the engine takes (llama.cpp aborts below 64)



class Engine:
    """A loaded vision-language model: text GGUF + mmproj GGUF, one multi-sequence context.

    Use as a context manager, or call :meth:`close`; native memory is freed at once.

    Attributes:
        buffer_choice: Which extra CPU weight buffers the load allowed, and why.
        weight_buffers: MiB of weights per llama.cpp buffer type, as the load reported
            them ("CPU_Mapped", "CPU_REPACK", "CUDA0", ...).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        mmproj_path: str | os.PathLike[str],
        settings: EngineSettings | None = None,
        progress: Callable[[float], bool] | None = None,
    ) -> None:
        """Validate the pair, then load it.

        Args:
            model_path: The text model GGUF.
            mmproj_path: Its projector GGUF.
            settings: Context and hardware settings.
            progress: Called with 0.0 to 1.0 while the weights load; returning False
                stops loading, and the constructor raises :class:`Cancelled`.

        Raises:
            ModelFileError: A file is missing, truncated or does not match the other.
            EngineError: llama.cpp or libmtmd refused a file.
            Cancelled: ``progress`` returned False.
        """
        self.settings = settings or EngineSettings()
        self._progress = progress
        self._load_cancelled = False
        self.model_path = Path(model_path)
        self.mmproj_path = Path(mmproj_path)
        self.stats = EngineStats()
        self.cancel_event = threading.Event()
        self._model = self._ctx = self._mctx = None
        self._batch: lc.llama_batch | None = None
        self._pieces: dict[int, bytes] = {}
        self.weight_buffers: dict[str, float] = {}
        self._turn_end: frozenset[int] = frozenset()
        if self.settings.n_ctx == AUTO_CTX:  # no plan sized it
            self.settings = dataclasses.replace(self.settings, n_ctx=FALLBACK_CTX)
        if self.settings.n_ctx < MIN_CTX:  # llama.cpp asserts (and aborts) below this
            raise EngineError(f"the context must hold at least {MIN_CTX} tokens, "
                              f"not {self.settings.n_ctx}")
        text_info, mmproj_info = check_pair(self.model_path, self.mmproj_path)
        self._declared_mode = text_info.metadata.get(STAGE_MODE_KEY)
        self.adapter: FamilyAdapter = detect_family(text_info.metadata, mmproj_info.metadata)
        self._chat_template = chat_template(text_info.metadata)
        self._bos_text = self._eos_text = ""
        init_backend()
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    # -- lifetime -------------------------------------------------------------------------

    def _load(self) -> None:
        s = self.settings
        threads = s.threads or default_threads()
        mparams = lc.llama_model_default_params()
        mparams.n_gpu_layers = s.gpu_layers if s.gpu_layers >= 0 else 999
        self.buffer_choice: WeightBuffers = choose_weight_buffers(s.allow_amx)
        mparams.use_extra_bufts = self.buffer_choice.use_extra
        log.info("%s: %s", self.model_path.name, self.buffer_choice.reason)
        if self._progress is not None:
            self._progress_cb = lc.llama_progress_callback(self._on_progress)
            mparams.progress_callback = self._progress_cb
        with native_log.capture() as lines:
            self._model = lc.llama_model_load_from_file(str(self.model_path).encode(), mparams)
        self.weight_buffers = parse_weight_buffers(lines)
        if not self._model and self._load_cancelled:
            raise Cancelled("loading the model was cancelled")
        if not self._model:
            raise EngineError(
                f"{self.model_path}: llama.cpp could not load the model"
                + reason(native_log.last_error())
            )
        self._vocab = lc.llama_model_get_vocab(self._model)
        self.n_vocab = lc.llama_vocab_n_tokens(self._vocab)
        self._bos_text, self._eos_text = self._template_specials()
        self._turn_end = self._turn_end_tokens()

        self._ctx = lc.llama_init_from_model(self._model, context_params(s, threads))
        if not self._ctx:
            raise EngineError(
                f"{self.model_path}: llama.cpp could not create a context of {s.n_ctx} tokens"
                + reason(native_log.last_error())
            )
        self._abort_cb = lc.ggml_abort_callback(lambda _data: self.cancel_event.is_set())
        lc.llama_set_abort_callback(self._ctx, self._abort_cb, ctypes.c_void_p(0))
        self._memory = lc.llama_get_memory(self._ctx)

        mparams = projector_params(s, threads)
        self.encode_abort = EncodeAbort(lambda: self.cancel_event)
        mparams.cb_eval = self.encode_abort.callback  # a stop reaches the image encode too
        self._mctx = mtmd.mtmd_init_from_file(str(self.mmproj_path).encode(), self._model,
                                               mparams)
        if not self._mctx:
            raise EngineError(
                f"{self.mmproj_path}: libmtmd could not load the projector"
                + reason(native_log.last_error())
            )
        if not mtmd.mtmd_support_vision(self._mctx):
            raise EngineError(f"{self.mmproj_path}: the projector has no vision encoder")
        self._batch = lc.llama_batch_init(s.n_batch, 0, s.n_seq_max)
        self.media_marker = mtmd.mtmd_default_marker().decode()

    def _on_progress(self, value: float, _data: ctypes.c_void_p) -> bool:
        try:
            go_on = bool(self._progress(value)) if self._progress else True
        except Exception:  # an exception must not unwind through C
            log.exception("the load progress callback failed")
            go_on = True
        self._load_cancelled = not go_on
        return go_on

    def close(self) -> None:
        """Free every native resource; safe to call twice."""
        if self._batch is not None:
            lc.llama_batch_free(self._batch)
            self._batch = None
        if self._mctx:
            mtmd.mtmd_free(self._mctx)
            self._mctx = None
        if self._ctx:
            lc.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            lc.llama_model_free(self._model)
            self._model = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- model facts ----------------------------------------------------------------------

    @property
    def ctx(self) -> lc.llama_context_p:
        if not self._ctx:
            raise EngineError("the engine is closed")
        return self._ctx

    @property
    def n_ctx(self) -> int:
        """The context size llama.cpp actually allocated (it rounds the request up)."""
        return int(lc.llama_n_ctx(self.ctx))

    @property
    def vocab(self) -> lc.llama_vocab_p:
        return self._vocab

    @property
    def name(self) -> str:
        return self.meta("general.name") or self.model_path.stem

    @property
    def stage_mode(self) -> StageMode:
        """Native when the model says it is a LLaVA-CoT fine-tune, else prompted."""
        return StageMode.NATIVE if self._declared_mode == "native" else StageMode.PROMPTED

    @property
    def uses_mrope(self) -> bool:
        return bool(mtmd.mtmd_decode_use_mrope(self._mctx))

    @property
    def family(self) -> str:
        """The model family's adapter name ("qwen2.5-vl", "gemma3", ..., "generic")."""
        return self.adapter.name

    @property
    def stop_texts(self) -> tuple[str, ...]:
        """Text of the tokens that end the assistant's turn for this family."""
        return self.adapter.stop_tokens

    @property
    def max_image_pixels(self) -> int:
        """Largest image handed to libmtmd; larger ones are downscaled before encoding."""
        return self.adapter.max_image_pixels

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(4096)
        n = lc.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace") if n >= 0 else None

    def is_eog(self, token: int) -> bool:
        """Whether ``token`` ends the assistant's turn: one of llama.cpp's end-of-generation
        tokens, or one of the family's end-of-turn tokens (:attr:`stop_texts`)."""
        return token in self._turn_end or bool(lc.llama_vocab_is_eog(self._vocab, token))

    def _turn_end_tokens(self) -> frozenset[int]:
        """The family's end-of-turn texts that are single tokens of this vocabulary.

        llama.cpp recognises the usual ones by their text, but a GGUF whose converter
        marked none of them still stops where its family's template ends a turn.
        """
        found = set()
        for text in self.adapter.stop_tokens:
            ids = self.tokenize(text)
            if len(ids) == 1 and self.piece(ids[0]).decode("utf-8", "replace") == text:
                found.add(ids[0])
        return frozenset(found)

    # -- text -----------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool = False,
                 special: bool = True) -> list[int]:
        """Tokenize text, parsing control tokens (chat markers, stage tags) unless
        ``special`` is False."""
        raw = text.encode("utf-8")
        cap = len(raw) + 16
        buf = (lc.llama_token * cap)()
        n = lc.llama_tokenize(self._vocab, raw, len(raw), buf, cap, add_special, special)
        if n < 0:
            cap = -n
            buf = (lc.llama_token * cap)()
            n = lc.llama_tokenize(self._vocab, raw, len(raw), buf, cap, add_special, special)
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
        n = lc.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, True)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = lc.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, True)
        out = buf.raw[: max(n, 0)]
        self._pieces[token] = out
        return out

    def chat_prompt(self, user_text: str, *, with_image: bool = True,
                    earlier: Sequence[tuple[str, str]] = (), system: str = "") -> str:
        """Render one user turn with the model's own chat template, ending at the reply.

        ``earlier`` turns (the user's text, the assistant's answer; oldest first) come
        before it, in the template's multi-turn form, the image in the first user turn;
        a ``system`` message, when given, before them all.

        The model family's adapter (:attr:`family`, picked from the GGUF metadata at load)
        renders the Jinja template stored in the GGUF, with the media marker where that
        family's template puts the image. The generic adapter, and a model without a
        template, use llama.cpp's ``llama_chat_apply_template`` with the marker first;
        a template llama.cpp does not know is then rendered here, the same way.
        If the family's rendering fails, llama.cpp's is tried before giving up.

        Raises:
            ChatTemplateError: The template cannot be rendered, by either path.
            EngineError: No template at all, and llama.cpp has no default either.
        """
        adapter = self.adapter
        if not adapter.native_template and self._chat_template is not None:
            try:
                return self._render(adapter, user_text, with_image, earlier, system)
            except ChatTemplateError as error:
                log.warning("%s: %s; using llama.cpp's template handling", self.name, error)
                try:
                    return self._native_chat_prompt(user_text, with_image=with_image,
                                                    earlier=earlier, system=system)
                except EngineError:
                    raise error from None
        try:
            return self._native_chat_prompt(user_text, with_image=with_image, earlier=earlier,
                                            system=system)
        except EngineError:
            if self._chat_template is None:
                raise
            return self._render(GENERIC, user_text, with_image, earlier, system)

    def _render(self, adapter: FamilyAdapter, user_text: str, with_image: bool,
                earlier: Sequence[tuple[str, str]] = (), system: str = "") -> str:
        return adapter.render_prompt(self._chat_template, user_text, self.media_marker,
                                     with_image=with_image, bos_token=self._bos_text,
                                     eos_token=self._eos_text, earlier=earlier, system=system)

    def _template_specials(self) -> tuple[str, str]:
        """What ``{{ bos_token }}`` and ``{{ eos_token }}`` render as in chat templates.

        BOS renders empty when the tokenizer adds it itself (libmtmd tokenizes prompts
        with ``add_special``), so that it is not doubled.
        """
        def text(token: int) -> str:
            return self.piece(token).decode("utf-8", "replace") if token >= 0 else ""

        adds_bos = bool(lc.llama_vocab_get_add_bos(self._vocab))
        bos = "" if adds_bos else text(lc.llama_vocab_bos(self._vocab))
        return bos, text(lc.llama_vocab_eos(self._vocab))

    def _native_chat_prompt(self, user_text: str, *, with_image: bool = True,
                            earlier: Sequence[tuple[str, str]] = (), system: str = "") -> str:
        """The conversation through llama.cpp's ``llama_chat_apply_template``, the marker
        first in the first user turn."""
        if with_image and earlier:
            (first, answer), *rest = earlier
            earlier = [(f"{self.media_marker}\n{first}", answer), *rest]
        elif with_image:
            user_text = f"{self.media_marker}\n{user_text}"
        return apply_builtin_template(self._model, user_text, self.model_path, earlier, system)

    # -- prompts with images --------------------------------------------------------------

    def tokenize_prompt(self, prompt: str, bitmap: Bitmap | None,
                        plain: Sequence[str] = ()) -> TokenizedPrompt:
        """Split a prompt into text and image chunks (preprocessing, not encoding, the image).

        libmtmd tokenizes the prompt up to the image's media marker; the text after it
        goes through :meth:`tokenize_plain`, so that ``plain`` texts in it (the user's
        question, say) stay text even where they spell a control token such as
        ``<|im_end|>``. Every family's template puts the image before the question.
        """
        head, marker, after = prompt.rpartition(self.media_marker)
        if bitmap is None or not marker:
            head, after = "", prompt
        result = split_at_image(self._mctx, head + marker, bitmap if marker else None)
        result.extra = tuple(self.tokenize_plain(after, plain))
        if not result.chunks and not result.extra:
            result.close()
            raise EngineError("the prompt is empty")
        return result

    def eval_prompt(self, prompt: TokenizedPrompt, seq_id: int) -> int:
        """Evaluate a whole prompt into ``seq_id`` from position 0; return the next position.

        The logits of the last token are left at output index -1.
        """
        self._check_cancel()
        needed = prompt.n_tokens
        if needed >= self.n_ctx:  # libmtmd would only say "failed to eval chunk"
            raise EngineError(
                f"the image and question need {needed} tokens but the context holds "
                f"{self.n_ctx}: raise the context size")
        n_past = 0
        if prompt.chunks:
            new_n_past = lc.llama_pos(0)
            rc = mtmd.mtmd_helper_eval_chunks(
                self._mctx, self.ctx, prompt.handle, 0, seq_id, self.settings.n_batch,
                not prompt.extra, ctypes.byref(new_n_past),
            )
            self.stats.image_encodes += sum(c.is_image for c in prompt.chunks)
            self.stats.prompt_tokens += sum(c.n_tokens for c in prompt.chunks)
            if rc != 0:
                self._check_cancel()
                raise EngineError(f"evaluating the prompt failed (libmtmd error {rc})"
                                  + reason(native_log.last_error()))
            n_past = int(new_n_past.value)
        if prompt.extra:
            self.eval_tokens([(seq_id, n_past, prompt.extra)])
            self.stats.prompt_tokens += len(prompt.extra)
        return n_past + len(prompt.extra)

    def eval_prefix(self, prompt: TokenizedPrompt, seq_id: int) -> int:
        """Evaluate a prompt's chunks up to the end of its last image into ``seq_id`` from
        position 0 (the image is encoded); return the next position, ``prompt.shared_pos``.

        This is the part of a question's prompt that is the same for any question about
        the image; the tokens after it (:meth:`TokenizedPrompt.tail_tokens`) are the
        question's own. No logits are kept.

        Raises:
            Cancelled: The cancel event was set (checked during the encode, too).
            EngineError: The prompt has no image, does not fit, or libmtmd failed.
        """
        self._check_cancel()
        end = prompt.media_end
        if not end:
            raise EngineError("the prompt has no image")
        if prompt.n_tokens >= self.n_ctx:
            raise EngineError(
                f"the image and question need {prompt.n_tokens} tokens but the context "
                f"holds {self.n_ctx}: raise the context size")
        start = time.perf_counter()
        n_past = lc.llama_pos(0)
        for index in range(end):
            chunk = mtmd.mtmd_input_chunks_get(prompt.handle, index)
            rc = mtmd.mtmd_helper_eval_chunk_single(
                self._mctx, self.ctx, chunk, n_past.value, seq_id, self.settings.n_batch,
                False, ctypes.byref(n_past))
            if rc != 0:
                self._check_cancel()
                raise EngineError(f"evaluating the image failed (libmtmd error {rc})"
                                  + reason(native_log.last_error()))
        self.stats.image_encodes += sum(c.is_image for c in prompt.chunks[:end])
        self.stats.prompt_tokens += sum(c.n_tokens for c in prompt.chunks[:end])
        self.stats.encode_s += time.perf_counter() - start
        return int(n_past.value)

    # -- sequences ------------------------------------------------------------------------

    def clear(self) -> None:
        """Forget every sequence."""
        lc.llama_memory_clear(self._memory, True)

    def copy_seq(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        """Make ``dst`` share ``src``'s cache cells in positions [p0, p1) (no copying of data)."""
        lc.llama_memory_seq_cp(self._memory, src, dst, p0, p1)

    def remove_seq(self, seq_id: int, p0: int = -1, p1: int = -1) -> None:
        lc.llama_memory_seq_rm(self._memory, seq_id, p0, p1)

    # -- decoding -------------------------------------------------------------------------

    def decode(
        self,
        tokens: Sequence[int],
        positions: Sequence[int],
        seq_ids: Sequence[int],
        logits: Sequence[bool],
    ) -> None:
        """Decode one batch: token ``i`` goes to sequence ``seq_ids[i]`` at ``positions[i]``.

        Raises:
            Cancelled: the cancel event was set (checked before and during the decode).
            EngineError: the context is full, or llama.cpp failed.
        """
        n = len(tokens)
        if n == 0:
            return
        if n > self.settings.n_batch:
            raise EngineError(f"batch of {n} tokens exceeds n_batch {self.settings.n_batch}")
        self._check_cancel()
        b = self._batch
        for i in range(n):
            b.token[i] = tokens[i]
            b.pos[i] = positions[i]
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq_ids[i]
            b.logits[i] = logits[i]
        b.n_tokens = n
        rc = lc.llama_decode(self.ctx, b)
        self.stats.decode_calls += 1
        self.stats.decoded_tokens += n
        if rc == 0:
            return
        if rc == 2 or self.cancel_event.is_set():
            raise Cancelled()
        if rc == 1:
            raise EngineError(
                f"the context of {self.n_ctx} tokens is full: raise the context size "
                "or lower the beam width or tokens per stage"
            )
        raise EngineError(f"llama_decode failed ({rc})" + reason(native_log.last_error()))

    def eval_tokens(self, jobs: Sequence[tuple[int, int, Sequence[int]]]) -> dict[int, int]:
        """Evaluate token runs for several sequences, batched; logits only at each run's end.

        Args:
            jobs: ``(seq_id, first_position, tokens)`` for each sequence; tokens non-empty.

        Returns:
            For each sequence, the batch position of its last token, where its logits are
            read; valid until the next decode. All final tokens go into the last batch so
            that every position holds.
        """
        pending: list[tuple[int, int, int]] = []  # (token, pos, seq) except each last token
        last: list[tuple[int, int, int]] = []
        for seq, start, toks in jobs:
            if not toks:
                raise EngineError("eval_tokens needs at least one token per sequence")
            pending += [(t, start + i, seq) for i, t in enumerate(toks[:-1])]
            last.append((toks[-1], start + len(toks) - 1, seq))
        if len(last) > self.settings.n_batch:
            raise EngineError("more sequences than fit one batch")
        step = self.settings.n_batch
        for i in range(0, len(pending), step):
            part = pending[i : i + step]
            self.decode([p[0] for p in part], [p[1] for p in part], [p[2] for p in part],
                        [False] * len(part))
        self.decode([p[0] for p in last], [p[1] for p in last], [p[2] for p in last],
                    [True] * len(last))
        return {seq: i for i, (_, _, seq) in enumerate(last)}

    def logits(self, index: int) -> np.ndarray:
        """The logits of the token at batch position ``index`` (-1: the last one with logits).

        A view, valid until the next decode.
        """
        ptr = lc.llama_get_logits_ith(self.ctx, index)
        if not ptr:
            raise EngineError(f"no logits at output {index}")
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def token_logprob(self, index: int, token: int) -> float:
        """log p(token) under the raw model distribution at output ``index``."""
        row = self.logits(index)
        top = float(row.max())
        return float(row[token]) - top - float(np.log(np.exp(row - top).sum()))

    def _check_cancel(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled()

