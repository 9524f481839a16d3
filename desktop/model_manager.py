"""The model manager: the catalogue with sizes, a "fits this machine" mark and its sources,
downloads with progress, pause, resume and cancel, delete, import of local files, and
choosing the model to use.

Downloads belong to :class:`~stagewise.desktop.downloads.Downloads`, which the main window
owns: one started here goes on in the background after the manager closes."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
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

from stagewise.desktop.downloads import Downloads, State
from stagewise.desktop.formatting import fits_text, format_bytes, progress_text
from stagewise.desktop.import_files import choose_model_files
from stagewise.desktop.widgets import keep_on_screen, plain_label, plain_tip
from stagewise.models.errors import StagewiseError
from stagewise.models.hardware import Hardware
from stagewise.models.library.catalogue import CatalogueEntry, source_link
from stagewise.models.library.hub_transfer import DownloadProgress
from stagewise.models.library.installed import InstalledModel, Library, rough_fit


@dataclass(frozen=True)
class Row:
    """One line of the table: a catalogue entry, an installed model, or both."""

    id: str
    entry: CatalogueEntry | None
    installed: InstalledModel | None

    @property
    def name(self) -> str:
        if self.entry is not None:
            return self.entry.name + (" (process reward model)" if self.entry.verifier else "")
        assert self.installed is not None
        return f"{self.installed.name} (imported)"

    @property
    def size(self) -> int:
        if self.installed is not None and self.installed.present:
            return self.installed.size
        return self.entry.total_bytes if self.entry is not None else 0


class ModelManager(QDialog):
    """Browse, download, import, delete and choose models."""

    model_chosen = Signal(object)  # InstalledModel
    server_requested = Signal()  # the user wants a model another program serves

    def __init__(self, library: Library, catalogue: tuple[CatalogueEntry, ...],
                 hardware: Hardware, *, current: Path | None = None,
                 endpoint: str | None = None, downloads: Downloads | None = None,
                 parent: QWidget | None = None) -> None:
        """Args:
            library: The installed models.
            catalogue: The models that can be downloaded.
            hardware: This machine, for the "fits" column.
            current: The model file in use, marked "in use".
            endpoint: The hub to download from (None: the usual one).
            downloads: The window's background downloads; None makes the manager its own,
                which stop (and keep their partial file) when it closes.
            parent: The window.
        """
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.setMinimumSize(720, 420)
        keep_on_screen(self)  # frame and title bar included
        self.library, self.catalogue, self.hardware = library, catalogue, hardware
        self.current, self.endpoint = current, endpoint
        self._own_downloads = downloads is None
        self.downloads = downloads or Downloads(library, endpoint=endpoint, parent=self)
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
        self.details.setOpenExternalLinks(True)
        self.details.setAccessibleName("Model details")
        self.progress = QProgressBar()
        self.progress.setAccessibleName("Download progress")
        self.progress.hide()
        self.progress_label = plain_label()  # names files
        self.progress_label.setAccessibleName("Download status")
        self.message = plain_label()  # an error's own words
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
        self.pause_button.clicked.connect(self.pause_or_resume)
        self.cancel_button.clicked.connect(self.cancel_download)
        self.delete_button.clicked.connect(self.delete_selected)
        self.import_button.clicked.connect(self._choose_import)
        self.use_button.clicked.connect(self.use_selected)
        self.close_button.clicked.connect(self.close)
        self.downloads.changed.connect(self._on_download_changed)
        self.downloads.progress.connect(self._on_progress)
        self.downloads.finished.connect(self._on_finished)
        self.downloads.failed.connect(self._on_failed)
        self._on_download_changed()

    def _build_buttons(self) -> QHBoxLayout:
        self.download_button = QPushButton("&Download")
        self.pause_button = QPushButton("&Pause")
        self.cancel_button = QPushButton("&Cancel Download")
        self.delete_button = QPushButton("De&lete")
        self.import_button = QPushButton("&Import Files…")
        self.use_button = QPushButton("&Use This Model")
        self.server_button = QPushButton("Use a &Server…")
        self.close_button = QPushButton("Close")
        for button, tip in (
                (self.download_button, "Download the model and its projector from Hugging Face "
                                       "in the background (it goes on when this closes)"),
                (self.pause_button, "Stop the download for now; Resume continues where it "
                                    "stopped"),
                (self.cancel_button, "Stop the download and delete what it downloaded"),
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
        for button in (self.download_button, self.pause_button, self.cancel_button,
                       self.delete_button, self.import_button):
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

    @property
    def _downloading(self) -> str | None:
        """The id of the model being downloaded (or paused), if any."""
        entry = self.downloads.entry
        return entry.id if entry is not None and self.downloads.active else None

    def _state(self, row: Row) -> str:
        if row.id == self._downloading:
            return "paused" if self.downloads.state is State.PAUSED else "downloading…"
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
        state = self.downloads.state
        self.pause_button.setText("&Resume" if state is State.PAUSED else "&Pause")
        self.pause_button.setEnabled(state in (State.RUNNING, State.PAUSED))
        self.pause_button.setVisible(busy)
        self.cancel_button.setEnabled(busy and state is not State.CANCELLING)
        self.cancel_button.setVisible(busy)
        self.delete_button.setEnabled(row is not None and row.installed is not None
                                      and row.id != self._downloading)
        # a process reward model scores another model's steps; it does not answer
        self.use_button.setEnabled(installed and not (row.entry and row.entry.verifier))
        self.details.setText(_details(row) if row else "Select a model to see its details.")

    # -- actions --------------------------------------------------------------------------

    def download_selected(self) -> None:
        """Start downloading the selected catalogue model in the background."""
        row = self.selected()
        if row is None or row.entry is None:
            return
        self.hide_message()
        if self.downloads.start(row.entry):
            self.progress_label.setText(f"Starting the download of {row.entry.name}…")

    def pause_or_resume(self) -> None:
        """Pause a running download (keeping its partial file) or resume a paused one."""
        if self.downloads.state is State.PAUSED:
            self.downloads.resume()
        else:
            self.downloads.pause()

    def cancel_download(self) -> None:
        """Stop the download and delete what it downloaded."""
        self.downloads.cancel()

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
        chosen = choose_model_files(self)
        if chosen is not None:
            self.import_files(*chosen)

    # -- download signals -----------------------------------------------------------------

    @Slot()
    def _on_download_changed(self) -> None:
        state, entry = self.downloads.state, self.downloads.entry
        self.progress.setVisible(state is not State.IDLE)
        if entry is not None and state is State.PAUSED:
            last = self.downloads.last
            at = f" at {format_bytes(last.done)} of {format_bytes(last.total)}" if last else ""
            self.progress_label.setText(f"{entry.name}: paused{at}. Resume continues where "
                                        "it stopped.")
        elif entry is not None and state is State.RUNNING and self.downloads.last is None:
            self.progress.setRange(0, 0)
        elif state is State.CANCELLING:
            self.progress_label.setText("Cancelling…")
        elif state is State.IDLE and self.progress_label.text().endswith("…"):
            self.progress_label.setText("")
        self.refresh()

    @Slot(object)
    def _on_progress(self, p: DownloadProgress) -> None:
        if p.total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(round(1000 * p.done / p.total))
        self.progress_label.setText(progress_text(p))

    @Slot(object)
    def _on_finished(self, model: InstalledModel) -> None:
        self.progress_label.setText(f"{model.name} is installed.")
        self.refresh()
        self.select(model.id)

    @Slot(object, str)
    def _on_failed(self, entry: CatalogueEntry, advice: str) -> None:
        self.progress_label.setText("")
        self.show_message(f"{entry.name} was not downloaded. {advice}", self.downloads.detail)

    @property
    def downloading(self) -> bool:
        """Whether a download is under way or paused."""
        return self.downloads.active

    # -- messages and closing -------------------------------------------------------------

    def show_message(self, text: str, detail: str = "") -> None:
        """Show ``text`` below the table; ``detail`` (an error's own words) as its tooltip."""
        self.message.setText(text)
        self.message.setToolTip(plain_tip(detail))
        self.message.show()

    def hide_message(self) -> None:
        self.message.clear()

    def closeEvent(self, event: QCloseEvent) -> None:
        """Closing leaves the window's download running; a download of the manager's own
        stops (its partial file is kept for a resume)."""
        if self._own_downloads:
            self.downloads.shut_down()
        super().closeEvent(event)

    def reject(self) -> None:
        self.close()
        super().reject()


def _details(row: Row) -> str:
    parts = [f"<b>{escape(row.name)}</b>"]
    entry = row.entry
    if entry is not None and entry.verifier:
        parts.append(escape(f"{entry.family} · {entry.params} · {entry.quant} · a process "
                            "reward model: it scores each stage another model writes, and "
                            "does not answer (in Settings, choose the selection by a process "
                            "reward model and its file below as the scorer model). "
                            f"Built on this machine from huggingface.co/{entry.weights}: "
                            f"{entry.build_command}"))
    elif entry is not None:
        parts.append(escape(f"{entry.family} · {entry.params} · {entry.quant} · "
                            f"{'native' if entry.stage_mode == 'native' else 'prompted'} stages"
                            + (" · thinking model" if entry.thinking else "")))
        if entry.repo:
            parts.append(escape(f"From huggingface.co/{entry.repo}"))
        parts.append(escape(f"Trained for: {entry.trained_for} Its answers about other "
                            "kinds of pictures deserve less trust." if entry.trained_for
                            else "Trained for: not recorded."))
    if entry is not None:
        parts.append(f"Licence: {escape(entry.licence)}"
                     + (f" ({escape(entry.licence_url)})" if entry.licence_url else ""))
        if entry.notes:
            parts.append(escape(entry.notes))
        if entry.sources:
            parts.append("Sources: " + " · ".join(_source_html(s) for s in entry.sources))
    if row.installed is not None:
        parts.append(escape(f"Files: {row.installed.model} · {row.installed.mmproj.name}"))
    return "<br>".join(parts)


def _source_html(source: str) -> str:
    """A catalogue source as a link, its note in parentheses after it."""
    url, note = source_link(source)
    shown = url.split("://", 1)[-1]
    if len(shown) > 60:
        shown = shown[:57] + "…"
    link = f'<a href="{escape(url, quote=True)}">{escape(shown)}</a>'
    return f"{link} ({escape(note)})" if note else link
