"""llama.cpp's process-wide state: its backends, started once, and its log.

llama.cpp and libmtmd log through one callback, routed here to :mod:`logging`; the last
warnings and errors are kept to explain a failure, and a load's lines can be captured
(which buffer types its weights went to, say).
"""

from __future__ import annotations

import _thread
import collections
import contextlib
import ctypes
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from llama_cpp import llama_cpp as lc
from llama_cpp import mtmd_cpp as mtmd

from stagewise.models.errors import EngineError
from stagewise.models.inference.engine_settings import EngineSettings

__all__ = ["NativeLog", "apply_builtin_template", "context_params", "init_backend",
           "native_log", "projector_params", "reason", "supports_gpu_offload"]

log = logging.getLogger("stagewise.llama")

_GGML_LOG_WARN, _GGML_LOG_ERROR, _GGML_LOG_CONT = 3, 4, 5  # enum ggml_log_level
_FLASH = {
    "auto": lc.LLAMA_FLASH_ATTN_TYPE_AUTO,
    "on": lc.LLAMA_FLASH_ATTN_TYPE_ENABLED,
    "off": lc.LLAMA_FLASH_ATTN_TYPE_DISABLED,
}


class NativeLog:
    """Routes llama.cpp's and libmtmd's log lines to :mod:`logging`, keeping the last errors."""

    def __init__(self) -> None:
        self.recent: collections.deque[str] = collections.deque(maxlen=20)
        self._captures: list[list[str]] = []
        self._partial = ""
        self._level = 0
        self._lock = threading.Lock()
        self.callback = lc.llama_log_callback(self._on_log)

    def _on_log(self, level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        try:
            self._take(level, text)
        except KeyboardInterrupt:
            # Ctrl+C landed while llama.cpp was calling back into Python: ctypes would print
            # the interrupt as an ignored exception and drop it, and the program would go
            # on as if no key was pressed; deliver it again once llama.cpp returns.
            _thread.interrupt_main()

    def _take(self, level: int, text: bytes) -> None:
        piece = text.decode("utf-8", "replace") if text else ""
        with self._lock:
            if level != _GGML_LOG_CONT:
                self._level = level
            self._partial += piece
            if not self._partial.endswith("\n"):
                return
            line, self._partial = self._partial.strip(), ""
            for lines in self._captures:
                lines.append(line)
        if not line:
            return
        if self._level in (_GGML_LOG_WARN, _GGML_LOG_ERROR):
            self.recent.append(line)
        log.debug("%s", line)

    @contextlib.contextmanager
    def capture(self) -> Iterator[list[str]]:
        """Collect every line logged, at any level, while the block runs."""
        lines: list[str] = []
        with self._lock:
            self._captures.append(lines)
        try:
            yield lines
        finally:
            with self._lock:
                self._captures.remove(lines)

    def last_error(self) -> str:
        errors = [line for line in self.recent if "error" in line.lower() or "fail" in line.lower()]
        return errors[-1] if errors else (self.recent[-1] if self.recent else "")


native_log = NativeLog()
_backend_lock = threading.Lock()
_backend_ready = False


def init_backend() -> None:
    global _backend_ready
    with _backend_lock:
        if _backend_ready:
            return
        lc.llama_log_set(native_log.callback, ctypes.c_void_p(0))
        mtmd.mtmd_log_set(native_log.callback, ctypes.c_void_p(0))
        mtmd.mtmd_helper_log_set(native_log.callback, ctypes.c_void_p(0))
        lc.llama_backend_init()
        _backend_ready = True


def supports_gpu_offload() -> bool:
    """Whether this build of llama.cpp can offload layers (CUDA, Metal, Vulkan...)."""
    init_backend()
    return bool(lc.llama_supports_gpu_offload())




def reason(text: str) -> str:
    return f" ({text})" if text else ""


def context_params(settings: EngineSettings, threads: int) -> lc.llama_context_params:
    """A context for many sequences sharing one unified KV cache."""
    cparams = lc.llama_context_default_params()
    cparams.n_ctx = settings.n_ctx
    cparams.n_batch = settings.n_batch
    cparams.n_ubatch = settings.n_batch
    cparams.n_seq_max = settings.n_seq_max
    cparams.n_threads = threads
    cparams.n_threads_batch = threads
    cparams.kv_unified = True
    cparams.flash_attn_type = _FLASH[settings.flash_attn]
    cparams.no_perf = True
    return cparams


def projector_params(settings: EngineSettings, threads: int) -> mtmd.mtmd_context_params:
    mp = mtmd.mtmd_context_params_default()
    mp.use_gpu = settings.gpu_layers != 0
    mp.n_threads = threads
    mp.print_timings = False
    mp.warmup = False
    mp.flash_attn_type = _FLASH[settings.flash_attn]
    return mp


def apply_builtin_template(model: lc.llama_model_p, content: str, path: Path,
                           earlier: Sequence[tuple[str, str]] = (), system: str = "") -> str:
    """One user turn of ``content`` through llama.cpp's ``llama_chat_apply_template``,
    after the ``earlier`` turns (user text, assistant answer), oldest first, and a
    ``system`` message first when one is given.

    Raises:
        EngineError: llama.cpp does not know the model's template.
    """
    template = lc.llama_model_chat_template(model, None)
    turns = [("system", system)] if system else []
    turns += [(role, text) for user, answer in earlier
              for role, text in (("user", user), ("assistant", answer))]
    turns.append(("user", content))
    encoded = [(role.encode(), text.encode("utf-8")) for role, text in turns]
    msg = (lc.llama_chat_message * len(encoded))()
    for i, (role, text) in enumerate(encoded):
        msg[i].role = role
        msg[i].content = text
    size = sum(len(text) for _, text in encoded) * 2 + 1024
    for _ in range(2):
        buf = ctypes.create_string_buffer(size)
        n = lc.llama_chat_apply_template(template, msg, len(encoded), True, buf, size)
        if n < 0:
            raise EngineError(f"{path}: llama.cpp does not know this model's chat template")
        if n <= size:
            return buf.raw[:n].decode("utf-8")
        size = n + 1
    raise EngineError("the chat template output kept growing")
