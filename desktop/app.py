"""Starting the window: ``stagewise`` with no command, and ``stagewise --self-test``."""

from __future__ import annotations

import logging
import os
import signal
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from stagewise.models.library.demo import example_image
from stagewise.models.stages import Stage
from stagewise.models.storage.app_settings import AppSettings, load_settings

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget

SELF_TEST_QUESTION = "How many red circles are there?"
EXIT_OK, EXIT_FAILED = 0, 1


@dataclass(frozen=True)
class WindowOptions:
    """What the command line asked of the window."""

    self_test: bool = False
    screenshot: Path | None = None
    model: Path | None = None
    mmproj: Path | None = None
    beam: int | None = None
    timeout_s: float = 300.0
    startup_report: Path | None = None
    show_candidates: Stage | None = None


def run_window(options: WindowOptions) -> int:
    """Open the window (and run the self-test when asked); returns the exit status."""
    from PySide6.QtWidgets import QApplication

    from stagewise.desktop import threads
    from stagewise.desktop.main_window import MainWindow
    from stagewise.desktop.self_test import SelfTest

    logging.basicConfig(level=logging.WARNING, format="stagewise: %(message)s")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Stagewise")
    app.setOrganizationName("Stagewise")
    app.setApplicationDisplayName("Stagewise")
    settings = _for_session(load_settings(), options)
    window = MainWindow(settings)
    window.show()
    if options.startup_report is not None:
        _report_when_shown(options.startup_report)
    _close_on_interrupt(window)
    status = EXIT_OK
    if options.self_test:
        test = SelfTest(window, example_image(), SELF_TEST_QUESTION, options.screenshot,
                        options.timeout_s, options.show_candidates)
        test.start()
        app.exec()
        status = test.status
        print(test.report, file=sys.stderr if status else sys.stdout)
    else:
        app.exec()
    if threads.running_threads():  # the engine did not stop within the bound: do not hang
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def _report_when_shown(path: Path) -> None:
    """Write the wall-clock time (``time.time()``) to ``path`` once the event loop has
    shown the window: the packaging check subtracts its own time of launch."""
    import time

    from PySide6.QtCore import QTimer

    def write() -> None:
        path.write_text(f"{time.time():.6f}\n", encoding="utf-8")

    QTimer.singleShot(0, write)


def _close_on_interrupt(window: QWidget) -> None:
    """Ctrl+C in the terminal closes the window the normal way (stopping the engine, saving
    the settings) instead of a traceback. Qt's loop runs no Python code on its own, so a
    timer wakes it to let the signal handler run."""
    from PySide6.QtCore import QTimer

    signal.signal(signal.SIGINT, lambda *_: window.close())
    waker = QTimer(window, interval=200)
    waker.timeout.connect(lambda: None)
    waker.start()


def _for_session(settings: AppSettings, options: WindowOptions) -> AppSettings:
    """The saved settings with this session's command-line choices on top."""
    if options.model is not None or options.mmproj is not None:
        settings = replace(settings, model=options.model or settings.model,
                           mmproj=options.mmproj)
    if options.beam is not None:
        settings = settings.with_beam_choice(options.beam)  # 0: auto
    return settings
