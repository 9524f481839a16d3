"""Every background QThread the app starts, so that none outlives its owner unseen.

The engine thread, downloads and the diagnostics report register here. At exit the app
ends the process at once if one is still running past its bound (:func:`running_threads`),
and the tests fail a test that leaves one running.

One plain Python thread imports the model library as the window opens
(:func:`import_in_background`); the window joins it when it closes.

The engine thread hands the interpreter over to the window within half a millisecond
(:func:`start_in_background`). Between llama.cpp's calls the engine thread runs Python
(sampling, bookkeeping) holding the GIL, and by default a waiting thread gets the GIL only
after 5 ms: every call the window's thread made into C (a query, a file's status) and back
cost it up to that again, so a history refresh of a few milliseconds stalled the window for
60–125 ms on a 3B model (``bench/gui_latency.py --real-shape``).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
import weakref

from PySide6.QtCore import QObject, QThread

__all__ = ["SWITCH_INTERVAL_S", "import_in_background", "keep_alive", "register_thread",
           "running_threads", "start_in_background"]

SWITCH_INTERVAL_S = 0.0005
"""How long a thread holding the GIL keeps it while another waits (Python's default: 5 ms).
The engine thread's Python runs between C calls that release the GIL, so the window waits
at most this long for it; the engine loses nothing measurable (it rarely has to give way:
the window's thread sleeps in its event loop without the GIL)."""

_threads: weakref.WeakSet[QThread] = weakref.WeakSet()
_stuck: list[QObject] = []  # threads that outlived their bound: never destroyed while running


def register_thread(thread: QThread) -> None:
    """Count a background thread (a download, say) among those tests require to end."""
    _threads.add(thread)


def keep_alive(*objects: QObject) -> None:
    """Keep a thread that outlived its shutdown bound (and its worker) from being destroyed
    while it runs; the process should end with :func:`os._exit` once its files are closed."""
    _stuck.extend(objects)


def running_threads() -> list[QThread]:
    """Background threads started by this process that are still running."""
    return [t for t in list(_threads) if t.isRunning()]


def start_in_background(thread: QThread) -> None:
    """Start ``thread``, the GIL handed over every :data:`SWITCH_INTERVAL_S` while the
    window waits for it.

    The engine keeps its normal priority: ten ``nice`` steps lower took the window's
    longest stall from about 20 to 14 ms, but under other programs' load it gave llama.cpp
    a tenth of the cores (answers six times slower).
    """
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
    thread.start()


def import_in_background(name: str) -> threading.Thread:
    """Import the Qt-free module ``name`` in a thread of its own, so that the window's
    thread later finds it imported instead of running its import (the model library's
    huggingface_hub and httpx took 250 ms of the window's thread just after launch, while
    the user may be typing). The window's thread may still import it itself: it then waits
    for this import to finish, as before. An error is left for that import to raise."""

    def run() -> None:
        with contextlib.suppress(Exception):  # the window's own import raises it, seen
            importlib.import_module(name)

    thread = threading.Thread(target=run, name="stagewise-import", daemon=True)
    thread.start()
    return thread
