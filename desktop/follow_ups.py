"""The questions asked so far about the open image, and whether the next is a follow-up.

Every question asked about the same open image joins its thread (the history keeps them
together); with the question box's "Follow-up" box ticked, the next question is asked with
the thread's earlier questions and answers in context. The box is ticked only by the person
asking: it becomes available after the first answer about an image, and turns off when
another image arrives or a past run is restored (greyed out while there is nothing to
follow up on), so that a question never silently becomes a follow-up.

:class:`ThreadView` shows the thread above the question box, a line a question, and keeps
the state the window asks with (:meth:`ThreadView.job_fields`).
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QCheckBox, QLabel, QVBoxLayout, QWidget

from stagewise.desktop.widgets import plain_tip
from stagewise.models.reasoning.conversation import Turn
from stagewise.models.reasoning.run_view import RunStatus, RunView
from stagewise.models.storage.history import HistoryEntry

__all__ = ["AskedTurn", "ThreadView"]

SHOWN = 3
"""The newest questions listed; older ones are counted."""

NO_CONTEXT_TIP = "Ask a first question about the image; a follow-up can then refer to it"
SERVER_TIP = ("Follow-ups need a model on this computer: a server answers each question "
              "on its own")
CONTEXT_TIP = ("Ask with the earlier questions about this image and their answers in "
               "context (the image is not read again)")


@dataclass(frozen=True)
class AskedTurn:
    """One question of the thread: its run in the history (-1 when it is not saved), the
    question, and its conclusion ("" when it has none)."""

    run_id: int
    question: str
    answer: str


class ThreadView(QWidget):
    """The thread of the open image, shown as a short list; hidden while it is empty."""

    def __init__(self, follow_up: QCheckBox, parent: QWidget | None = None) -> None:
        """Show the thread and drive ``follow_up``, the question box's "Follow-up" box."""
        super().__init__(parent)
        self.follow_up = follow_up
        self.turns: list[AskedTurn] = []
        self.note = ""  # the last follow-up's earlier turns left out to fit the context
        self.supported = True  # False while a server answers (it cannot hold a thread)
        self._pending = ""  # the question being answered
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setAccessibleName("Earlier questions about this image")
        self.label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        self._show()

    # -- what the window asks with --------------------------------------------------------

    def earlier(self) -> tuple[Turn, ...]:
        """The turns a follow-up has in context: every answered question of the thread."""
        return tuple(Turn(t.question, t.answer) for t in self.turns if t.answer.strip())

    def job_fields(self, question: str) -> dict[str, object]:
        """The thread fields of the job asking ``question`` now: the earlier turns (when the
        Follow-up box is ticked) and the saved run it follows (None for a new thread)."""
        self._pending = question
        saved = [t.run_id for t in self.turns if t.run_id >= 0]
        follow = self.follow_up.isEnabled() and self.follow_up.isChecked()
        return {"earlier": self.earlier() if follow else (),
                "thread": saved[-1] if saved else None}

    # -- changes --------------------------------------------------------------------------

    def answered(self, run_id: int, view: RunView) -> None:
        """The question asked last has ended; a follow-up can refer to its conclusion if it
        finished (a stopped or failed answer stays in the thread without one)."""
        if not self._pending:
            return
        conclusion = view.conclusion.strip() if view.status is RunStatus.FINISHED else ""
        self.turns.append(AskedTurn(run_id, self._pending, conclusion))
        dropped = view.result.timings.dropped_turns if view.result is not None else 0
        self.note = (f"The oldest {dropped} of the earlier questions were left out of the "
                     "last answer's context, so that it fits (a larger Context size in "
                     "Settings → Preferences keeps more)." if dropped else "")
        self._pending = ""
        self._show()  # available now; ticked only by the person asking

    def new_image(self) -> None:
        """Another image: a new thread, and no follow-up."""
        self.turns, self._pending, self.note = [], "", ""
        self.follow_up.setChecked(False)
        self._show()

    def restore(self, entries: Iterable[HistoryEntry]) -> None:
        """A past thread, restored with its image: its questions are shown, and a follow-up
        can go on from its last one once the box is ticked again (a restore unticks it)."""
        self.turns = [AskedTurn(e.id, e.question,
                                e.conclusion.strip() if e.status == "finished" else "")
                      for e in entries]
        self._pending, self.note = "", ""
        self.follow_up.setChecked(False)
        self._show()

    def set_supported(self, supported: bool) -> None:
        """Whether follow-ups can be asked at all: not while a server answers."""
        self.supported = supported
        self._show()

    def forget(self, run_ids: Iterable[int]) -> None:
        """Runs deleted from the history leave the thread."""
        gone = set(run_ids)
        self.turns = [t for t in self.turns if t.run_id not in gone]
        self._show()

    # -- showing --------------------------------------------------------------------------

    def _show(self) -> None:
        available = bool(self.earlier()) and self.supported
        self.follow_up.setEnabled(available)
        if not available:
            self.follow_up.setChecked(False)
        self.follow_up.setToolTip(CONTEXT_TIP if available else NO_CONTEXT_TIP
                                  if self.supported else SERVER_TIP)
        self.setVisible(bool(self.turns))
        if not self.turns:
            self.label.clear()
            return
        older = len(self.turns) - SHOWN
        lines = ["<b>Asked about this image</b>"
                 + (f" ({older} earlier not shown)" if older > 0 else "")]
        for number, turn in enumerate(self.turns[-SHOWN:], max(older, 0) + 1):
            answer = html.escape(_short(turn.answer)) if turn.answer else "<i>no answer</i>"
            lines.append(f"{number}. {html.escape(_short(turn.question))} → {answer}")
        if self.note:
            lines.append(f"<i>{html.escape(self.note)}</i>")
        self.label.setText("<br>".join(lines))
        self.label.setToolTip(plain_tip("\n\n".join(
            f"{t.question}\n→ {t.answer or 'no answer'}" for t in self.turns)))


def _short(text: str, limit: int = 70) -> str:
    """One line of at most ``limit`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else f"{line[: limit - 1]}…"
