"""Guards against PySide6 releases the app cannot run on."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    fired = Signal(object)


def test_emit_keeps_its_references_to_true():
    """PySide6 6.12.0 on CPython 3.11 drops a reference to True on every emit() from Python;
    the interpreter aborts once they run out (a streamed answer emits thousands). The
    dependency excludes it; this fails if a release with the bug is installed."""
    emitter = _Emitter()
    before = sys.getrefcount(True)
    for i in range(1000):
        emitter.fired.emit(i)
    assert sys.getrefcount(True) >= before - 10
