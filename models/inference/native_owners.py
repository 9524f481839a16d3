"""Owners of the native handles an engine holds: each frees its one handle, once.

An owner wraps one handle made by llama.cpp or libmtmd (a model, a context, a projector
context, a batch) and frees it in :meth:`NativeOwner.close`; a second close does nothing.
Owners are context managers, so an :class:`contextlib.ExitStack` that they are entered
into frees them in the reverse order of their making: the engine keeps one such stack, and
a load that fails half-way (a projector libmtmd refuses after the model and its context
were made) frees what it had made before the error leaves the constructor. llama-cpp-python
does the same in its ``_internals`` module, one small class with an exit stack per handle.

:func:`live_owners` lists the owners not yet closed, which is how the tests show that a
failed load leaks nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from llama_cpp import llama_cpp as lc
from llama_cpp import mtmd_cpp as mtmd

from stagewise.models.errors import EngineError

__all__ = ["BatchOwner", "ContextOwner", "ModelOwner", "NativeOwner", "ProjectorOwner",
           "live_owners"]

log = logging.getLogger("stagewise.llama")

H = TypeVar("H")

_live: dict[int, str] = {}  # id(owner) -> what it owns, for owners not yet closed
_live_lock = threading.Lock()


def live_owners() -> list[str]:
    """What the owners made in this process and not yet closed hold ("model", ...)."""
    with _live_lock:
        return sorted(_live.values())


class NativeOwner(Generic[H]):
    """One native handle and the function that frees it.

    Args:
        handle: The handle just made; it must not be NULL (the maker checks that first).
        what: What it is, for messages and :func:`live_owners` ("model", "context", ...).
        free: Frees the handle; called once, by :meth:`close`.
    """

    def __init__(self, handle: H, what: str, free: Callable[[H], None]) -> None:
        self._handle: H | None = handle
        self.what = what
        self._free = free
        with _live_lock:
            _live[id(self)] = what

    @property
    def closed(self) -> bool:
        return self._handle is None

    @property
    def handle(self) -> H:
        """The handle.

        Raises:
            EngineError: The owner was closed.
        """
        if self._handle is None:
            raise EngineError(f"the {self.what} is closed")
        return self._handle

    def close(self) -> None:
        """Frees the handle; safe to call again."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        with _live_lock:
            _live.pop(id(self), None)
        self._free(handle)
        log.debug("freed the %s", self.what)

    def __enter__(self) -> NativeOwner[H]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ModelOwner(NativeOwner[lc.llama_model_p]):
    """A loaded text model (``llama_model_free``)."""

    def __init__(self, handle: lc.llama_model_p) -> None:
        super().__init__(handle, "model", lc.llama_model_free)


class ContextOwner(NativeOwner[lc.llama_context_p]):
    """A context on a model (``llama_free``), with the abort callback it calls: the
    callback must live as long as the context does.

    Args:
        handle: The context.
        abort: The ctypes callback llama.cpp asks whether to stop a decode.
    """

    def __init__(self, handle: lc.llama_context_p, abort: object) -> None:
        super().__init__(handle, "context", lc.llama_free)
        self.abort = abort


class ProjectorOwner(NativeOwner[mtmd.mtmd_context_p]):
    """libmtmd's projector context (``mtmd_free``); it uses the text model, so it is
    freed before the model."""

    def __init__(self, handle: mtmd.mtmd_context_p) -> None:
        super().__init__(handle, "projector", mtmd.mtmd_free)


class BatchOwner(NativeOwner[lc.llama_batch]):
    """A batch's token, position, sequence and logits arrays (``llama_batch_free``).

    Args:
        n_tokens: Most tokens one decode takes.
        n_seq_max: Most sequences one token may belong to.
    """

    def __init__(self, n_tokens: int, n_seq_max: int) -> None:
        super().__init__(lc.llama_batch_init(n_tokens, 0, n_seq_max), "batch",
                         lc.llama_batch_free)
