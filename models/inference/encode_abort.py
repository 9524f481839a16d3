"""Stopping an image encode part-way: libmtmd's graph evaluation callback as a cancel check.

llama.cpp's abort callback reaches ``llama_decode`` only; the vision encoder runs in its
own scheduler, which nothing could stop, so a stop (or a new image dropped) waited for the
whole encode (tens of seconds for a ViT-L on a small CPU). libmtmd hands its
``cb_eval`` to that scheduler (``ggml_backend_sched_set_eval_callback``): the scheduler
asks the callback, node by node, whether it wants to see a node's result, computes the
graph up to the first such node, then calls it again with the result, and stops computing
the graph when that call returns false (``ggml_backend_sched_compute_splits``).

:class:`EncodeAbort` asks to see every :data:`CHECK_EVERY`-th node and answers "stop" once
the engine's cancel event is set; the encode then returns early with unfinished
embeddings, the decode of them is aborted by the context's own abort callback, and the
engine raises :class:`~stagewise.models.errors.Cancelled`, keeping nothing of it. The
nodes are computed exactly as in one piece (the same operations in the same order); only
the threads meet a few dozen times more per image.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable

from llama_cpp import llama_cpp as lc

__all__ = ["CHECK_EVERY", "EncodeAbort"]

log = logging.getLogger("stagewise.llama")

CHECK_EVERY = 16
"""Graph nodes computed between two looks at the cancel event (a ViT layer is about 20)."""


class EncodeAbort:
    """The callback, and how often it stopped an encode (for tests and logs).

    Attributes:
        callback: The ctypes function to put in ``mtmd_context_params.cb_eval``; keep this
            object alive as long as the projector is loaded.
        checks: Cancel checks made so far.
        stops: Encodes stopped so far.
    """

    def __init__(self, cancel: Callable[[], threading.Event], every: int = CHECK_EVERY
                 ) -> None:
        """``cancel`` gives the event to read (the engine's current one, which every
        question and preparation replaces)."""
        self._cancel = cancel
        self._every = max(every, 1)
        self._asked = 0
        self.checks = 0
        self.stops = 0
        self.callback = lc.ggml_backend_sched_eval_callback(self._on_node)

    def _on_node(self, _tensor: ctypes.c_void_p, ask: bool, _data: ctypes.c_void_p) -> bool:
        try:
            if ask:  # "do you want this node's result?": yes, every few nodes
                self._asked += 1
                return self._asked % self._every == 0 or self._cancel().is_set()
            self.checks += 1
            if self._cancel().is_set():
                self.stops += 1
                return False  # stop computing this graph
            return True
        except Exception:  # an exception must not unwind through C
            log.exception("the image encode's cancel check failed")
            return True
