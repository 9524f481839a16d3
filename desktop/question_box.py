"""The question row: a text box (Enter asks, Shift+Enter is a new line), an image button,
Ask, Stop, beam, and "Follow-up" (:mod:`stagewise.desktop.follow_ups` turns it on and off)."""

from __future__ import annotations

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QAbstractButton,
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from stagewise.models.reasoning.auto_beam import AUTO_BEAM
from stagewise.models.reasoning.search_settings import BEAM


class _QuestionEdit(QPlainTextEdit):
    submitted = Signal()
    image_pasted = Signal(QMimeData)  # an image (or image file) pasted or dropped here

    def canInsertFromMimeData(self, source: QMimeData) -> bool:
        return _is_image(source) or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: QMimeData) -> None:
        if _is_image(source):
            self.image_pasted.emit(source)
        else:
            super().insertFromMimeData(source)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        enter = event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if enter and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self.submitted.emit()
            return
        super().keyPressEvent(event)


def _text_width(widget: QAbstractButton) -> int:
    """The least width that shows a button's whole text: a check box's box and text, a push
    button's text and margins (less than the style's usual 80 px, which a narrow window
    may take away)."""
    if isinstance(widget, QCheckBox):
        return widget.sizeHint().width()
    text = widget.text().replace("&", "")
    return widget.fontMetrics().horizontalAdvance(text) + 20


def _is_image(mime: QMimeData) -> bool:
    """Image data or local files: meant for the image pane, not the question's text."""
    if mime.hasImage():
        return True
    return mime.hasUrls() and all(url.isLocalFile() for url in mime.urls())


class QuestionBox(QWidget):
    """Emits ``ask_requested(question)`` and ``stop_requested``; shows busy state.

    An image pasted or dropped onto the question is passed on as ``image_pasted``.
    """

    ask_requested = Signal(str)
    attach_requested = Signal()  # the "Image…" button: choose an image file
    image_pasted = Signal(QMimeData)
    stop_requested = Signal()
    beam_changed = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edit = _QuestionEdit()
        self.edit.setPlaceholderText("Ask about the image…  (Enter asks, Shift+Enter: new line)")
        self.edit.setAccessibleName("Question")
        self.edit.setTabChangesFocus(True)
        line = self.edit.fontMetrics().lineSpacing()
        self.edit.setFixedHeight(line * 3 + 16)

        self.beam = QSpinBox()
        self.beam.setRange(AUTO_BEAM, BEAM.high)
        self.beam.setSpecialValueText("auto")  # 0: chosen from this machine's measured speed
        self.beam.setAccessibleName("Beam width")
        self.beam.setToolTip("Candidates sampled per stage; the best is kept. 1 = single pass; "
                             "auto = the widest of 1, 2, 4 this computer runs within twice a "
                             "single pass (the status bar says which and why).")
        beam_label = QLabel("&Beam")
        beam_label.setBuddy(self.beam)

        self.follow_up = QCheckBox("Follo&w-up")
        self.follow_up.setAccessibleName("Follow-up")
        self.follow_up.setEnabled(False)  # until there is an answer to follow up on

        self.attach_button = QPushButton("&Image…")
        self.attach_button.setAccessibleName("Attach an image")
        self.attach_button.setToolTip("Choose an image file to ask about (Ctrl+O); you can "
                                      "also drop or paste one")

        self.ask_button = QPushButton("&Ask")
        self.ask_button.setAccessibleName("Ask")
        self.ask_button.setToolTip("Ask the question about the image (Enter)")
        self.ask_button.setDefault(True)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setAccessibleName("Stop")
        self.stop_button.setToolTip("Stop the answer (Esc); what was written is kept")
        self.stop_button.setEnabled(False)

        for widget in (self.attach_button, self.follow_up, self.stop_button, self.ask_button):
            widget.setMinimumWidth(_text_width(widget))  # squeezed, never cut ("Follow-u")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.attach_button)
        row.addWidget(beam_label)
        row.addWidget(self.beam)
        row.addWidget(self.follow_up)
        row.addStretch(1)
        row.addWidget(self.stop_button)
        row.addWidget(self.ask_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit)
        layout.addLayout(row)

        self.edit.submitted.connect(self._submit)
        self.edit.image_pasted.connect(self.image_pasted)
        self.ask_button.clicked.connect(self._submit)
        self.stop_button.clicked.connect(self.stop_requested)
        self.attach_button.clicked.connect(self.attach_requested)
        self.beam.valueChanged.connect(self.beam_changed)
        self.edit.textChanged.connect(self._update_buttons)
        self._busy = False
        self._image_ready = False
        self._update_buttons()

    def question(self) -> str:
        return self.edit.toPlainText().strip()

    def set_question(self, text: str) -> None:
        self.edit.setPlainText(text)

    def set_busy(self, busy: bool) -> None:
        """While answering: Ask is off, Stop is on (the question stays editable)."""
        self._busy = busy
        self._update_buttons()

    def set_image_ready(self, ready: bool) -> None:
        self._image_ready = ready
        self._update_buttons()

    def _update_buttons(self) -> None:
        self.ask_button.setEnabled(not self._busy and self._image_ready and bool(self.question()))
        self.stop_button.setEnabled(self._busy)
        if not self._image_ready:
            self.ask_button.setToolTip("Drop, paste or open an image first")
        elif not self.question():
            self.ask_button.setToolTip("Type a question first")
        else:
            self.ask_button.setToolTip("Ask the question about the image (Enter)")

    def _submit(self) -> None:
        """Enter asks; the window says why when it cannot (no image, no question, busy)."""
        self.ask_requested.emit(self.question())
