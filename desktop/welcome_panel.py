"""The first-run panel: no real model yet, so it suggests the one that suits this computer."""

from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QWidget,
)

from stagewise.desktop.formatting import format_bytes
from stagewise.models.library.catalogue import CatalogueEntry

__all__ = ["WelcomePanel"]

DEMO_LINE = ("Until then Stagewise answers with its built-in demo model, which only knows "
             "pictures of coloured circles, squares and triangles.")
NO_MODEL_LINE = "Stagewise has no model to answer with yet."
LABEL_MIN_WIDTH = 480


class WelcomePanel(QFrame):
    """"Get a real model": the recommended download, Import Files… and a way to all models.

    Signals:
        download: The user wants the recommended entry (a :class:`CatalogueEntry`).
        import_files: The user wants to pick GGUF files already on this computer.
        more_models: The user wants the whole catalogue (Settings → Models).
        closed: The user hid the panel.
    """

    download = Signal(object)
    import_files = Signal()
    more_models = Signal()
    closed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.setAccessibleName("Get a model")
        self.dismissed = False
        self.entry: CatalogueEntry | None = None
        self._idle_text = "Download"
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        # a wrapped label is as tall as its text at its narrowest: keep it wide enough for
        # three lines, not ten (the window is at least 760 px wide)
        self.label.setMinimumWidth(LABEL_MIN_WIDTH)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.LinksAccessibleByMouse
                                           | Qt.TextInteractionFlag.LinksAccessibleByKeyboard)
        self.label.linkActivated.connect(lambda _link: self.more_models.emit())
        self.download_button = QPushButton("Download", self)
        self.download_button.setAccessibleName("Download the recommended model")
        self.import_button = QPushButton("Import Files…", self)
        self.import_button.setToolTip("Use a model's GGUF files already on this computer "
                                      "(the model and its mmproj projector)")
        self.import_button.setAccessibleName("Import files")
        self.close_button = QToolButton(self)
        self.close_button.setText("✕")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Hide this panel (Settings → Models has every model)")
        self.close_button.setAccessibleName("Hide the get-a-model panel")
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 6, 6, 6)
        row.addWidget(self.label, 1)
        row.addWidget(self.download_button)
        row.addWidget(self.import_button)
        row.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        self.download_button.clicked.connect(self._download)
        self.import_button.clicked.connect(self.import_files)
        self.close_button.clicked.connect(self.dismiss)
        self.hide()

    def set_recommendation(self, entry: CatalogueEntry | None, *, demo: bool,
                           resumable: bool = False) -> None:
        """Say what to download: ``entry`` (None: nothing in the catalogue fits here).

        Args:
            entry: The recommended catalogue entry.
            demo: Whether the built-in demo model answers meanwhile.
            resumable: Whether an earlier download of it left a partial file to resume.
        """
        self.entry = entry
        self._idle_text = "Resume Download" if resumable else "Download"
        self.download_button.setText(self._idle_text)
        meanwhile = DEMO_LINE if demo else NO_MODEL_LINE
        more = '<a href="models">See all models</a>'
        if entry is None:
            self.label.setText(
                f"<b>Get a vision model.</b> {escape(meanwhile)} None of the catalogue's "
                f"models fits this computer's free memory: import a smaller one, or {more}.")
        else:
            size = f"{format_bytes(entry.total_bytes)} download" if entry.total_bytes else (
                "size shown when the download starts")
            licence = f", licence {escape(entry.licence)}" if entry.licence else ""
            self.label.setText(
                f"<b>Get a real vision model.</b> Recommended for this computer: "
                f"<b>{escape(entry.name)}</b> ({escape(size)}, fits in its memory"
                f"{licence}). {escape(meanwhile)} {more}.")
            self.download_button.setToolTip(
                f"Download {entry.name} from huggingface.co/{entry.repo} in the background")
        self.download_button.setVisible(entry is not None)

    def set_busy(self, busy: bool) -> None:
        """While a download runs (its progress is in the status bar) Download waits."""
        self.download_button.setEnabled(not busy)
        self.download_button.setText("Downloading…" if busy else self._idle_text)

    def show_for(self, needed: bool) -> None:
        """Show while no real model is set up, unless the user hid it this session."""
        self.setVisible(needed and not self.dismissed)

    def dismiss(self) -> None:
        self.dismissed = True
        self.hide()
        self.closed.emit()

    def _download(self) -> None:
        if self.entry is not None:
            self.download.emit(self.entry)
