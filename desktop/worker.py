"""The engine's own thread: loads the model and runs questions, one job at a time."""

from __future__ import annotations

import weakref

from PySide6.QtCore import QThread

_threads: weakref.WeakSet[QThread] = weakref.WeakSet()


def running_threads() -> list[QThread]:
    """Engine threads started by this process that are still running (tests check it)."""
    return [t for t in list(_threads) if t.isRunning()]
