"""Fixtures for the Qt front end: offscreen Qt, no thread may outlive its test, and real
windows with their own settings file and history folder."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

if TYPE_CHECKING:
    from stagewise.desktop.main_window import MainWindow
    from stagewise.models.storage.app_settings import AppSettings

LOAD_MS = 180_000
"""How long a window may take to load its model (two shared cores under a full suite)."""


@pytest.fixture(autouse=True)
def _no_thread_left_running() -> Iterator[None]:
    """Fail a test that leaves a Python thread or a Stagewise QThread running."""
    before = set(threading.enumerate())
    yield
    from stagewise.desktop import threads  # imported late: tests that never start Qt stay light

    running = threads.running_threads()
    # a _DummyThread stands for a thread Python did not start (a QThread that ran Python
    # code); those are checked through running_threads() above
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()
            and not isinstance(t, threading._DummyThread)]
    assert not running, f"QThreads left running: {running}"
    assert not left, f"threads left running: {left}"


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    """A window's settings file and history folder, in the test's own folder."""
    return {"settings_path": tmp_path / "config" / "settings.json",
            "history_folder": tmp_path / "history"}


@pytest.fixture
def make_window(qtbot, folders: dict[str, Path]) -> Iterator[Callable[[AppSettings],
                                                                      MainWindow]]:
    """Makes shown windows with :func:`folders`, each with its model loaded; closes them."""
    from stagewise.desktop.main_window import MainWindow

    windows: list[MainWindow] = []

    def make(settings: AppSettings) -> MainWindow:
        window = MainWindow(settings, **folders)
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        qtbot.waitUntil(lambda: window.loaded is not None, timeout=LOAD_MS)
        return window

    yield make
    for window in windows:
        window.close()
