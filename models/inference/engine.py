"""The llama.cpp engine: one text model, its projector, and one context with many sequences.

This is a thin layer over the low-level bindings (``llama_cpp.llama_cpp`` and
``llama_cpp.mtmd_cpp``): each native handle has its owner
(:mod:`~stagewise.models.inference.native_owners`), all closed through one exit stack;
prompts are rendered by :mod:`~stagewise.models.inference.prompt_render` and text is
tokenized by :mod:`~stagewise.models.inference.tokenizer`. It knows nothing of stages or
beams; :mod:`stagewise.models.reasoning.search` drives it. One thread at a time may use an
engine.

Sequences share one unified KV cache: a prompt evaluated once into a sequence can be
forked into others with :meth:`Engine.copy_seq` at no cost, and tokens of many
sequences decode together in one :meth:`Engine.decode` call.
"""

from __future__ import annotations

import contextlib
import ctypes
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
from stagewise.models.inference.cpu_buffers import (
    WeightBuffers,
    choose_weight_buffers,
    parse_weight_buffers,
)
from stagewise.models.inference.encode_abort import EncodeAbort
from stagewise.models.inference.engine_settings import (
    AUTO_CTX,
    N_CTX,
    EngineSettings,
    EngineStats,
    default_threads,
)
from stagewise.models.inference.families import FamilyAdapter, detect_family
from stagewise.models.inference.families.base import chat_template
from stagewise.models.inference.gguf_check import check_pair
from stagewise.models.inference.images import PreparedImage
from stagewise.models.inference.llama_runtime import (
    context_params,
    init_backend,
    native_log,
    projector_params,
    reason,
)
from stagewise.models.inference.mtmd_prompt import Bitmap, TokenizedPrompt, tokenize_prompt
from stagewise.models.inference.native_owners import (
    BatchOwner,
    ContextOwner,
    ModelOwner,
    ProjectorOwner,
)
from stagewise.models.inference.prompt_render import PromptRenderer
from stagewise.models.inference.stage_mode import STAGE_MODE_KEY, StageMode
from stagewise.models.inference.tokenizer import Tokenizer

log = logging.getLogger("stagewise.llama")

STEP_TOKENS = 16
"""Largest batch :meth:`Engine.decode` runs without llama.cpp's abort callback.

llama.cpp asks the callback after every node of the graph (about 700 for one token of a 3B
model), from its first compute thread while the others wait; each call enters Python and
takes the GIL, which another Python thread (the window's) may hold for milliseconds. A step
of the search (one token per live sequence, a stage's forced tags) lasts a fraction of a
second even at real size, and the cancel event is checked before it; longer batches (a
prompt, a judge's prompt) keep the callback so that a stop ends them part-way.
"""


class Engine:
    """A loaded vision-language model: text GGUF + mmproj GGUF, one multi-sequence context.

    Use as a context manager, or call :meth:`close`; native memory is freed at once.

    Attributes:
        loads: Models loaded in this process, counted across engines (a class attribute:
            what a batch reports as its model loads).
        buffer_choice: Which extra CPU weight buffers the load allowed, and why.
        weight_buffers: MiB of weights per llama.cpp buffer type, as the load reported
            them ("CPU_Mapped", "CPU_REPACK", "CUDA0", ...).
    """

    loads = 0

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        mmproj_path: str | os.PathLike[str],
        settings: EngineSettings,
        progress: Callable[[float], bool] | None = None,
    ) -> None:
        """Validate the pair, then load it.

        Args:
            model_path: The text model GGUF.
            mmproj_path: Its projector GGUF.
            settings: Context and hardware settings, with a context size: a load plan's
                (:func:`stagewise.models.session.plan`) or one given, never automatic.
            progress: Called with 0.0 to 1.0 while the weights load; returning False
                stops loading, and the constructor raises :class:`Cancelled`.

        Raises:
            StagewiseError: A setting is out of its range
                (:meth:`EngineSettings.validate`).
            ModelFileError: A file is missing, truncated or does not match the other.
            EngineError: The context size is automatic, or llama.cpp or libmtmd refused
                a file; what was loaded before the refusal is freed.
            Cancelled: ``progress`` returned False.
        """
        self.settings = settings
        self._progress = progress
        self._load_cancelled = False
        self.model_path = Path(model_path)
        self.mmproj_path = Path(mmproj_path)
        self.stats = EngineStats()
        self.cancel_event = threading.Event()
        self._owners = contextlib.ExitStack()  # every native handle, freed in reverse
        self._model: ModelOwner | None = None
        self._context: ContextOwner | None = None
        self._projector: ProjectorOwner | None = None
        self._batch: BatchOwner | None = None
        self.weight_buffers: dict[str, float] = {}
        self.settings.validate()  # before llama.cpp, which aborts on some values
        if self.settings.n_ctx == AUTO_CTX:
            raise EngineError(
                "the context size is automatic: a load plan sizes it "
                "(stagewise.models.session.plan); an engine needs a size from "
                f"{N_CTX.low} to {N_CTX.high}")
        text_info, mmproj_info = check_pair(self.model_path, self.mmproj_path)
        self._declared_mode = text_info.metadata.get(STAGE_MODE_KEY)
        self.adapter: FamilyAdapter = detect_family(text_info.metadata, mmproj_info.metadata)
        self._chat_template = chat_template(text_info.metadata)
        init_backend()
        try:
            self._load()
        except BaseException:
            self.close()  # frees what the load made before it failed
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
            model = lc.llama_model_load_from_file(str(self.model_path).encode(), mparams)
        self.weight_buffers = parse_weight_buffers(lines)
        if not model and self._load_cancelled:
            raise Cancelled("loading the model was cancelled")
        if not model:
            raise EngineError(
                f"{self.model_path}: llama.cpp could not load the model"
                + reason(native_log.last_error())
            )
        self._model = self._owners.enter_context(ModelOwner(model))
        Engine.loads += 1
        self.tokenizer = Tokenizer(self._model, self.adapter.stop_tokens)

        abort = lc.ggml_abort_callback(lambda _data: self.cancel_event.is_set())
        ctx = lc.llama_init_from_model(model, context_params(s, threads))
        if not ctx:
            raise EngineError(
                f"{self.model_path}: llama.cpp could not create a context of {s.n_ctx} tokens"
                + reason(native_log.last_error())
            )
        self._context = self._owners.enter_context(ContextOwner(ctx, abort))
        self._abort_checks = False
        self._check_during_decode(True)
        self._memory = lc.llama_get_memory(ctx)

        mparams = projector_params(s, threads)
        self.encode_abort = EncodeAbort(lambda: self.cancel_event)  # kept alive with mctx
        mparams.cb_eval = self.encode_abort.callback  # a stop reaches the image encode too
        mctx = mtmd.mtmd_init_from_file(str(self.mmproj_path).encode(), model, mparams)
        if not mctx:
            raise EngineError(
                f"{self.mmproj_path}: libmtmd could not load the projector"
                + reason(native_log.last_error())
            )
        self._projector = self._owners.enter_context(ProjectorOwner(mctx))
        if not mtmd.mtmd_support_vision(mctx):
            raise EngineError(f"{self.mmproj_path}: the projector has no vision encoder")
        self._batch = self._owners.enter_context(BatchOwner(s.n_batch, s.n_seq_max))
        self.media_marker = mtmd.mtmd_default_marker().decode()
        self.prompts = PromptRenderer(self._model, self.model_path, self.name, self.adapter,
                                      self._chat_template, self.tokenizer, self.media_marker)

    def _on_progress(self, value: float, _data: ctypes.c_void_p) -> bool:
        try:
            go_on = bool(self._progress(value)) if self._progress else True
        except Exception:  # an exception must not unwind through C
            log.exception("the load progress callback failed")
            go_on = True
        self._load_cancelled = not go_on
        return go_on

    def close(self) -> None:
        """Free every native resource (batch, projector, context, model); safe to call twice."""
        self._owners.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- model facts ----------------------------------------------------------------------

    @property
    def ctx(self) -> lc.llama_context_p:
        if self._context is None or self._context.closed:
            raise EngineError("the engine is closed")
        return self._context.handle

    @property
    def n_ctx(self) -> int:
        """The context size llama.cpp actually allocated (it rounds the request up)."""
        return int(lc.llama_n_ctx(self.ctx))

    @property
    def vocab(self) -> lc.llama_vocab_p:
        return self.tokenizer.vocab

    @property
    def n_vocab(self) -> int:
        return self.tokenizer.n_vocab

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

    def fit_image(self, image: PreparedImage) -> PreparedImage:
        """``image`` as it is handed to libmtmd: downscaled to the family's largest picture
        or to the settings' image-token cap
        (:meth:`~stagewise.models.inference.families.base.FamilyAdapter.fit_image`)."""
        return self.adapter.fit_image(image, self.settings.image_tokens)

    @property
    def _mctx(self) -> mtmd.mtmd_context_p:
        if self._projector is None:
            raise EngineError("the engine is closed")
        return self._projector.handle

    def meta(self, key: str) -> str | None:
        if self._model is None:
            raise EngineError("the engine is closed")
        buf = ctypes.create_string_buffer(4096)
        n = lc.llama_model_meta_val_str(self._model.handle, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace") if n >= 0 else None

    # -- text (delegated) -----------------------------------------------------------------

    def is_eog(self, token: int) -> bool:
        """Whether ``token`` ends the assistant's turn (:meth:`Tokenizer.is_eog`)."""
        return self.tokenizer.is_eog(token)

    def tokenize(self, text: str, *, add_special: bool = False,
                 special: bool = True) -> list[int]:
        """Tokenize text (:meth:`Tokenizer.tokenize`)."""
        return self.tokenizer.tokenize(text, add_special=add_special, special=special)

    def tokenize_plain(self, text: str, plain: Sequence[str] = (), *,
                       add_special: bool = False) -> list[int]:
        """Tokenize text, ``plain`` texts as written (:meth:`Tokenizer.tokenize_plain`)."""
        return self.tokenizer.tokenize_plain(text, plain, add_special=add_special)

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for (:meth:`Tokenizer.piece`)."""
        return self.tokenizer.piece(token)

    def chat_prompt(self, user_text: str, *, with_image: bool = True,
                    earlier: Sequence[tuple[str, str]] = (), system: str = "",
                    images: int = 1) -> str:
        """One user turn in the model's chat template, after ``earlier`` turns and a
        ``system`` message, with ``images`` images (:meth:`PromptRenderer.chat_prompt`)."""
        return self.prompts.chat_prompt(user_text, with_image=with_image, earlier=earlier,
                                        system=system, images=images)

    # -- prompts with images --------------------------------------------------------------

    def tokenize_prompt(self, prompt: str, bitmap: Bitmap | None,
                        plain: Sequence[str] = ()) -> TokenizedPrompt:
        """Split a prompt into text and image chunks
        (:func:`~stagewise.models.inference.mtmd_prompt.tokenize_prompt`)."""
        return tokenize_prompt(self._mctx, self.tokenizer, self.media_marker, prompt, bitmap,
                               plain)

    def eval_prompt(self, prompt: TokenizedPrompt, seq_id: int) -> int:
        """Evaluate a whole prompt into ``seq_id`` from position 0; return the next position.

        The logits of the last token are left at output index -1.
        """
        self._check_cancel()
        self._check_during_decode(True)
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
        self._check_during_decode(True)
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
        self._check_during_decode(n > STEP_TOKENS)
        b = self._batch_handle
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

    def _check_during_decode(self, on: bool) -> None:
        """Let llama.cpp ask the cancel event during a decode, or not (:data:`STEP_TOKENS`)."""
        if on == self._abort_checks:
            return
        ctx = self.ctx
        assert self._context is not None
        callback = self._context.abort if on else lc.ggml_abort_callback(0)
        lc.llama_set_abort_callback(ctx, callback, ctypes.c_void_p(0))
        self._abort_checks = on

    @property
    def _batch_handle(self) -> lc.llama_batch:
        if self._batch is None:
            raise EngineError("the engine is closed")
        return self._batch.handle

    def _check_cancel(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled()

