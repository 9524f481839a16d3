"""The banner shown while the built-in demo model answers: what it knows, and the way to a
real model."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QWidget

TEXT = ("You are using the built-in demo model. It only knows pictures of coloured circles, "
        "squares and triangles on a 3×3 grid; about anything else its answers mean nothing.")


class DemoNotice(QFrame):
    """A dismissible notice with a "Get a Model…" button (Settings → Models)."""

    get_model = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAccessibleName("Demo model notice")
        self.dismissed = False
        self.label = QLabel(TEXT, self)
        self.label.setWordWrap(True)
        self.button = QPushButton("Get a Model…", self)
        self.button.setToolTip("Download or import a real vision model (Settings → Models)")
        self.button.setAccessibleName("Get a model")
        self.close_button = QToolButton(self)
        self.close_button.setText("✕")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Hide this notice for now")
        self.close_button.setAccessibleName("Hide the demo model notice")
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 6, 6, 6)
        row.addWidget(self.label, 1)
        row.addWidget(self.button)
        row.addWidget(self.close_button)
        self.button.clicked.connect(self.get_model)
        self.close_button.clicked.connect(self.dismiss)
        self.hide()

    def dismiss(self) -> None:
        self.dismissed = True
        self.hide()

    def show_for(self, demo: bool) -> None:
        """Show while the demo answers, unless the user hid it this session."""
        self.setVisible(demo and not self.dismissed)
