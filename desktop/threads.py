"""Every background QThread the app starts, so that none outlives its owner unseen.

The engine thread, downloads and the diagnostics report register here. At exit the app
ends the process at once if one is still running past its bound (:func:`running_threads`),
and the tests fail a test that leaves one running.
"""

from __future__ import annotations

import weakref

from PySide6.QtCore import QObject, QThread

__all__ = ["keep_alive", "register_thread", "running_threads"]

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
