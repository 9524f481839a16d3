"""``stagewise --self-test``: the real window answers a built-in question, then exits.

It passes only if all four stages arrived. The packaging checks run it on each bundle.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Slot
from PySide6.QtWidgets import QApplication

from stagewise.desktop.formatting import seconds_text
from stagewise.desktop.main_window import MainWindow
from stagewise.models.reasoning.run_view import RunStatus, RunView
from stagewise.models.stages import STAGES, Stage


class SelfTest(QObject):
    """Drives a :class:`MainWindow` through one question; ``status`` is the exit status."""

    def __init__(self, window: MainWindow, image: Path, question: str,
                 screenshot: Path | None, timeout_s: float,
                 candidates: Stage | None = None) -> None:
        super().__init__(window)
        self.window, self.image, self.question = window, image, question
        self.screenshot = screenshot
        self.candidates = candidates  # a stage whose candidates to open before the screenshot
        self.status = 1
        self.report = "self-test: did not run"
        self._finished = False
        self._timeout = QTimer(self, singleShot=True, interval=round(timeout_s * 1000))
        self._timeout.timeout.connect(self._timed_out)

    def start(self) -> None:
        self.window.answer_done.connect(self._done)
        self.window.host.worker.model_failed.connect(self._model_failed)
        QTimer.singleShot(0, self._ask)
        self._timeout.start()

    def _ask(self) -> None:
        self.window.image_pane.open_file(self.image)
        self.window.question_box.set_question(self.question)
        if not self.window.ask(self.question):
            self._finish(1, f"self-test: could not ask: {self.window.message.text()}")

    @Slot(object)
    def _done(self, view: RunView) -> None:
        missing = [s.title for s in STAGES if not view.stages[s].text.strip()]
        if view.status is not RunStatus.FINISHED:
            self._finish(1, f"self-test: the answer ended {view.status.value}"
                            + (f": {view.error}" if view.error else ""))
        elif missing:
            self._finish(1, f"self-test: stages missing: {', '.join(missing)}")
        else:
            t = view.result.timings if view.result else None
            took = f" in {seconds_text(t.total_s)}" if t else ""
            shown = "" if self.candidates is None else self._open_candidates(self.candidates)
            self._finish(0, f"self-test: all four stages arrived{took}; "
                            f"conclusion: {view.conclusion[:80]!r}{shown}")

    def _open_candidates(self, stage: Stage) -> str:
        """Open ``stage``'s card and its candidates, scroll the card's top into view, and say
        how many there are."""
        card = self.window.reasoning.card(stage)
        card.set_collapsed(False, user=True)
        card.set_candidates_open(True)
        for _ in range(20):  # the wrapped grid fixes its height a few layout passes later
            QApplication.processEvents()
            time.sleep(0.01)
        view = card.candidates_view
        self.window.reasoning.scroll.verticalScrollBar().setValue(card.y() - 4)  # its header
        QApplication.processEvents()
        return f"; {len(view.columns()) if view else 0} {stage.value} candidates shown"

    @Slot(str)
    def _model_failed(self, message: str) -> None:
        self._finish(1, f"self-test: the model could not be loaded: {message}")

    def _timed_out(self) -> None:
        self._finish(1, "self-test: no answer before the time limit")

    def _finish(self, status: int, report: str) -> None:
        if self._finished:
            return
        self._finished = True
        self._timeout.stop()
        self.status, self.report = status, report
        if self.screenshot is not None:
            QApplication.processEvents()
            if not self.window.grab().save(str(self.screenshot)):
                self.status = 1
                self.report += f"\nself-test: could not save the screenshot {self.screenshot}"
        self.window.close()
        QApplication.quit()
