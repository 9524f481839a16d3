"""Fixtures for the Qt front end: offscreen Qt, and no thread may outlive its test."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


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
