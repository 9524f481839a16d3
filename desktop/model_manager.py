"""The model manager: the catalogue with sizes and a "fits this machine" mark, downloads with
progress, cancel and resume, delete, import of local files, and choosing the model to use."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from stagewise.desktop import threads
from stagewise.desktop.formatting import fits_text, format_bytes, progress_text
from stagewise.models.errors import Cancelled, StagewiseError
from stagewise.models.hardware import Hardware
from stagewise.models.library.catalogue import CatalogueEntry
from stagewise.models.library.hub_transfer import DownloadProgress
from stagewise.models.library.installed import InstalledModel, Library, rough_fit

SHUTDOWN_MS = 5000


@dataclass(frozen=True)
class Row:
    """One line of the table: a catalogue entry, an installed model, or both."""

    id: str
    entry: CatalogueEntry | None
    installed: InstalledModel | None

    @property
    def name(self) -> str:
        if self.entry is not None:
            return self.entry.name
        assert self.installed is not None
        return f"{self.installed.name} (imported)"

    @property
    def size(self) -> int:
        if self.installed is not None and self.installed.present:
            return self.installed.size
        return self.entry.total_bytes if self.entry is not None else 0


class _Downloader(QObject):
    """Runs one pull in its own thread (never the engine's: answering goes on meanwhile)."""

    progress = Signal(object)  # DownloadProgress
    finished = Signal(object)  # InstalledModel
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, library: Library, entry: CatalogueEntry, cancel: threading.Event,
                 endpoint: str | None) -> None:
        super().__init__()
        self.library, self.entry, self.cancel, self.endpoint = library, entry, cancel, endpoint
        self._last = 0.0

    @Slot()
    def run(self) -> None:
        try:
            model = self.library.pull(self.entry, progress=self._progress, cancel=self.cancel,
                                      endpoint=self.endpoint)
        except Cancelled:
            self.cancelled.emit()
        except StagewiseError as error:
            self.failed.emit(str(error))
        except OSError as error:
            self.failed.emit(f"{error.strerror or error}")
        else:
            self.finished.emit(model)

    def _progress(self, p: DownloadProgress) -> None:
        now = time.monotonic()
        if now - self._last >= 0.1 or p.done >= p.total:  # the GUI needs 10 a second at most
            self._last = now
            self.progress.emit(p)


class ModelManager(QDialog):
    """Browse, download, import, delete and choose models."""

    model_chosen = Signal(object)  # InstalledModel
    server_requested = Signal()  # the user wants a model another program serves

    def __init__(self, library: Library, catalogue: tuple[CatalogueEntry, ...],
                 hardware: Hardware, *, current: Path | None = None,
                 endpoint: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.setMinimumSize(720, 420)
        self.library, self.catalogue, self.hardware = library, catalogue, hardware
        self.current, self.endpoint = current, endpoint
        self._thread: QThread | None = None
        self._downloader: _Downloader | None = None
        self._cancel: threading.Event | None = None
        self._downloading: str | None = None
        self.rows: list[Row] = []

        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Model", "Size", "Fits", "State"])
        self.table.setAccessibleName("Models")
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.details.setOpenExternalLinks(False)
        self.details.setAccessibleName("Model details")
        self.progress = QProgressBar()
        self.progress.setAccessibleName("Download progress")
        self.progress.hide()
        self.progress_label = QLabel()
        self.progress_label.setAccessibleName("Download status")
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setAccessibleName("Message")

        buttons = self._build_buttons()
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.details)
        layout.addWidget(self.progress)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.message)
        layout.addLayout(buttons)

        self.table.itemSelectionChanged.connect(self._update)
        self.download_button.clicked.connect(self.download_selected)
        self.server_button.clicked.connect(self.server_requested)
        self.cancel_button.clicked.connect(self.cancel_download)
        self.delete_button.clicked.connect(self.delete_selected)
        self.import_button.clicked.connect(self._choose_import)
        self.use_button.clicked.connect(self.use_selected)
        self.close_button.clicked.connect(self.close)
        self.refresh()

    def _build_buttons(self) -> QHBoxLayout:
        self.download_button = QPushButton("&Download")
        self.cancel_button = QPushButton("&Cancel Download")
        self.delete_button = QPushButton("De&lete")
        self.import_button = QPushButton("&Import Files…")
        self.use_button = QPushButton("&Use This Model")
        self.server_button = QPushButton("Use a &Server…")
        self.close_button = QPushButton("Close")
        for button, tip in (
                (self.download_button, "Download the model and its projector from Hugging Face"),
                (self.cancel_button, "Stop the download; downloading again resumes it"),
                (self.delete_button, "Delete a downloaded model (imported files are kept)"),
                (self.import_button, "Use GGUF files already on this computer"),
                (self.use_button, "Answer with this model from now on"),
                (self.server_button, "Answer with a model that llama-server or vLLM serves "
                                     "(Preferences → Remote model)"),
                (self.close_button, "Close this window")):
            button.setToolTip(tip)
            button.setAccessibleName(button.text().replace("&", "").rstrip("…"))
        self.use_button.setDefault(True)

        buttons = QHBoxLayout()
        for button in (self.download_button, self.cancel_button, self.delete_button,
                       self.import_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.server_button)
        buttons.addWidget(self.use_button)
        buttons.addWidget(self.close_button)
        return buttons

    # -- the table ------------------------------------------------------------------------

    def refresh(self) -> None:
        """Reload the installed models and redraw the table, keeping the selection."""
        keep = self.selected().id if self.selected() else None
        try:
            installed = {m.id: m for m in self.library.installed()}
        except StagewiseError as error:
            self.show_message(str(error))
            installed = {}
        self.rows = [Row(e.id, e, installed.pop(e.id, None)) for e in self.catalogue]
        self.rows += [Row(m.id, None, m) for m in installed.values()]
        self.table.setRowCount(len(self.rows))
        for i, row in enumerate(self.rows):
            fit = rough_fit(row.size, self.hardware)
            cells = (row.name, format_bytes(row.size) if row.size else "?",
                     fits_text(fit), self._state(row))
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column == 2 and fit is False:
                    item.setToolTip("Its files alone need more memory than this machine has "
                                    "free: it would be slow or fail to load.")
                self.table.setItem(i, column, item)
            if row.id == keep:
                self.table.selectRow(i)
        self._update()

    def selected(self) -> Row | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        return self.rows[rows[0].row()] if rows and rows[0].row() < len(self.rows) else None

    def select(self, model_id: str) -> None:
        for i, row in enumerate(self.rows):
            if row.id == model_id:
                self.table.selectRow(i)
                return
        raise KeyError(model_id)

    def _state(self, row: Row) -> str:
        if row.id == self._downloading:
            return "downloading…"
        if row.installed is None:
            return "" if row.entry is None or row.entry.repo else "build it locally"
        if not row.installed.present:
            return "files missing"
        if self.current is not None and row.installed.model == self.current:
            return "in use"
        return "installed"

    def _update(self) -> None:
        row = self.selected()
        busy = self._downloading is not None
        installed = row is not None and row.installed is not None and row.installed.present
        downloadable = (row is not None and row.entry is not None and row.entry.repo is not None
                        and not installed)
        self.download_button.setEnabled(downloadable and not busy)
        self.cancel_button.setEnabled(busy)
        self.cancel_button.setVisible(busy)
        self.delete_button.setEnabled(row is not None and row.installed is not None
                                      and row.id != self._downloading)
        self.use_button.setEnabled(installed)
        self.details.setText(_details(row) if row else "Select a model to see its details.")

    # -- actions --------------------------------------------------------------------------

    def download_selected(self) -> None:
        """Start downloading the selected catalogue model in a background thread."""
        row = self.selected()
        if row is None or row.entry is None or self._downloading is not None:
            return
        self.hide_message()
        self._downloading = row.id
        self._cancel = threading.Event()
        self._thread = QThread()
        self._thread.setObjectName("stagewise-download")
        self._downloader = _Downloader(self.library, row.entry, self._cancel, self.endpoint)
        self._downloader.moveToThread(self._thread)
        self._thread.started.connect(self._downloader.run)
        self._downloader.progress.connect(self._on_progress)
        self._downloader.finished.connect(self._on_finished)
        self._downloader.failed.connect(self._on_failed)
        self._downloader.cancelled.connect(self._on_cancelled)
        threads.register_thread(self._thread)
        self.progress.setRange(0, 0)
        self.progress.show()
        self.progress_label.setText(f"Starting the download of {row.entry.name}…")
        self._thread.start()
        self.refresh()

    def cancel_download(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
            self.progress_label.setText("Stopping…")

    def delete_selected(self, confirm: bool = True) -> None:
        row = self.selected()
        if row is None or row.installed is None:
            return
        what = ("Delete its downloaded files" if row.installed.source == "catalogue"
                else "Forget it (your files are kept)")
        if confirm and QMessageBox.question(
                self, "Delete model", f"{row.name}: {what}?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
                QMessageBox.StandardButton.Cancel) != QMessageBox.StandardButton.Yes:
            return
        try:
            self.library.remove(row.id)
        except StagewiseError as error:
            self.show_message(str(error))
        self.refresh()

    def import_files(self, model: Path, mmproj: Path | None = None) -> InstalledModel | None:
        """Add local GGUF files (the projector beside the model is found if not given)."""
        try:
            added = self.library.import_files(model, mmproj)
        except StagewiseError as error:
            self.show_message(str(error))
            return None
        self.hide_message()
        self.refresh()
        self.select(added.id)
        return added

    def use_selected(self) -> None:
        row = self.selected()
        if row is not None and row.installed is not None and row.installed.present:
            self.current = row.installed.model
            self.model_chosen.emit(row.installed)
            self.refresh()

    def _choose_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a model", "",
                                              "GGUF models (*.gguf);;All files (*)")
        if not path:
            return
        model = Path(path)
        from stagewise.models.library.files import find_mmproj

        mmproj = None
        if find_mmproj(model) is None:
            projector, _ = QFileDialog.getOpenFileName(
                self, "Its projector (mmproj)", str(model.parent),
                "GGUF projectors (*mmproj*.gguf);;GGUF files (*.gguf)")
            if not projector:
                return
            mmproj = Path(projector)
        self.import_files(model, mmproj)

    # -- download signals -----------------------------------------------------------------

    @Slot(object)
    def _on_progress(self, p: DownloadProgress) -> None:
        if p.total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(round(1000 * p.done / p.total))
        self.progress_label.setText(progress_text(p))

    @Slot(object)
    def _on_finished(self, model: InstalledModel) -> None:
        self._end_download(f"{model.name} is installed.")
        self.select(model.id)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._end_download("")
        self.show_message(f"The download failed: {message}")

    @Slot()
    def _on_cancelled(self) -> None:
        self._end_download("Download stopped. Download again to resume where it stopped.")

    def _end_download(self, status: str) -> None:
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait(SHUTDOWN_MS)
        self._thread = self._downloader = self._cancel = None
        self._downloading = None
        self.progress.hide()
        self.progress_label.setText(status)
        self.refresh()

    @property
    def downloading(self) -> bool:
        return self._downloading is not None

    # -- messages and closing -------------------------------------------------------------

    def show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.show()

    def hide_message(self) -> None:
        self.message.clear()

    def closeEvent(self, event: QCloseEvent) -> None:
        """Closing stops a download (the partial file is kept for a resume)."""
        if self._thread is not None:
            self.cancel_download()
            self._thread.quit()
            if not self._thread.wait(SHUTDOWN_MS):
                threads.keep_alive(self._thread, self._downloader)
        super().closeEvent(event)

    def reject(self) -> None:
        self.close()
        super().reject()


def _details(row: Row) -> str:
    from html import escape

    parts = [f"<b>{escape(row.name)}</b>"]
    entry = row.entry
    if entry is not None:
        parts.append(escape(f"{entry.family} · {entry.params} · {entry.quant} · "
                            f"{'native' if entry.stage_mode == 'native' else 'prompted'} stages"
                            + (" · thinking model" if entry.thinking else "")))
        if entry.repo:
            parts.append(escape(f"From huggingface.co/{entry.repo}"))
        parts.append(f"Licence: {escape(entry.licence)}"
                     + (f" ({escape(entry.licence_url)})" if entry.licence_url else ""))
        if entry.notes:
            parts.append(escape(entry.notes))
    if row.installed is not None:
        parts.append(escape(f"Files: {row.installed.model} · {row.installed.mmproj.name}"))
    return "<br>".join(parts)
