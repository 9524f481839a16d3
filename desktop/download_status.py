"""The background download in the status bar: its progress, Pause/Resume and Cancel."""

from __future__ import annotations

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QHBoxLayout, QProgressBar, QToolButton, QWidget

from stagewise.desktop.downloads import Downloads, State
from stagewise.desktop.formatting import format_bytes, progress_text
from stagewise.desktop.widgets import plain_label
from stagewise.models.library.hub_transfer import DownloadProgress

__all__ = ["DownloadStatus"]


class DownloadStatus(QWidget):
    """Shows the window's :class:`Downloads` while one is under way or paused."""

    def __init__(self, downloads: Downloads, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.downloads = downloads
        self.setAccessibleName("Download")
        self.label = plain_label()  # names files
        self.label.setAccessibleName("Download status")
        self.bar = QProgressBar()
        self.bar.setAccessibleName("Download progress")
        self.bar.setMaximumWidth(140)
        self.bar.setTextVisible(False)
        self.pause_button = QToolButton()
        self.pause_button.setAccessibleName("Pause or resume the download")
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel")
        self.cancel_button.setToolTip("Stop the download and delete what it downloaded")
        self.cancel_button.setAccessibleName("Cancel the download")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.label)
        row.addWidget(self.bar)
        row.addWidget(self.pause_button)
        row.addWidget(self.cancel_button)
        self.pause_button.clicked.connect(self._pause_or_resume)
        self.cancel_button.clicked.connect(downloads.cancel)
        downloads.changed.connect(self._on_changed)
        downloads.progress.connect(self._on_progress)
        self._on_changed()

    @Slot()
    def _pause_or_resume(self) -> None:
        if self.downloads.state is State.PAUSED:
            self.downloads.resume()
        else:
            self.downloads.pause()

    @Slot()
    def _on_changed(self) -> None:
        state, entry = self.downloads.state, self.downloads.entry
        self.setVisible(state is not State.IDLE)
        if entry is None:
            return
        paused = state is State.PAUSED
        self.pause_button.setText("Resume" if paused else "Pause")
        self.pause_button.setToolTip("Continue where it stopped" if paused else
                                     "Stop for now; Resume continues where it stopped")
        self.pause_button.setEnabled(state in (State.RUNNING, State.PAUSED))
        self.cancel_button.setEnabled(state is not State.CANCELLING)
        last = self.downloads.last
        if state is State.RUNNING:
            if last is None:
                self.bar.setRange(0, 0)
                self.label.setText(f"Downloading {entry.name}…")
            else:
                self._on_progress(last)
        elif state is State.PAUSING:
            self.label.setText(f"Pausing {entry.name}…")
        elif state is State.CANCELLING:
            self.label.setText(f"Cancelling {entry.name}…")
        else:
            done = f" at {format_bytes(last.done)} of {format_bytes(last.total)}" if last else ""
            self.label.setText(f"{entry.name}: paused{done}")

    @Slot(object)
    def _on_progress(self, p: DownloadProgress) -> None:
        if self.downloads.state is not State.RUNNING:
            return
        if p.total:
            self.bar.setRange(0, 1000)
            self.bar.setValue(round(1000 * p.done / p.total))
        self.label.setText(f"Downloading {progress_text(p)}")
