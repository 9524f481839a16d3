"""A folder's answers as they come: a progress bar with the time left, Stop, and the table
of rows, any of which opens in the main window as a normal answer (from the history)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from stagewise.desktop.formatting import format_duration, seconds_text
from stagewise.models.batch import BatchProgress, BatchRow, BatchSummary

HEADERS = ("File", "Question", "Conclusion", "Confidence", "Time", "Status")
RUN_ROLE = Qt.ItemDataRole.UserRole + 1  # the row's run in the history (-1: none)
COLUMN_WIDTHS = (190, 220, 220, 90, 70)  # the status takes the rest


class BatchWindow(QDialog):
    """The run of one folder (non-modal: the main window stays usable to read answers).

    Signals:
        open_run: A row was opened (double-click or Enter): its run's history id.
        stop_requested: Stop was pressed.
        ended: The run ended (finished, stopped or failed).
    """

    open_run = Signal(int)
    stop_requested = Signal()
    ended = Signal()

    def __init__(self, folder: Path, out: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Ask About a Folder — {folder.name or folder}")
        self.resize(900, 520)
        self.out = out
        self.running = True
        self.summary: BatchSummary | None = None
        self.status = QLabel(f"Starting… (results: {out})", self)
        self.status.setWordWrap(True)
        self.bar = QProgressBar(self)
        self.bar.setRange(0, 0)
        self.bar.setAccessibleName("Progress")
        self.stop_button = QPushButton("&Stop", self)
        self.stop_button.setToolTip("Stop after the answer being written; every row "
                                    "written is kept, and asking again goes on from there")
        self.stop_button.clicked.connect(self._stop)
        self.table = QTableWidget(0, len(HEADERS), self)
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)  # the status, with why a file was skipped
        for column, width in enumerate(COLUMN_WIDTHS):
            self.table.setColumnWidth(column, width)
        self.table.setAccessibleName("Answers")
        self.table.cellDoubleClicked.connect(lambda row, _column: self.open_row(row))
        self.table.itemActivated.connect(lambda item: self.open_row(item.row()))
        top = QHBoxLayout()
        top.addWidget(self.bar, 1)
        top.addWidget(self.stop_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)

    # -- the run ------------------------------------------------------------------------

    def show_rows(self, rows: list[BatchRow]) -> None:
        """Show rows a results file already held (skipped by this run)."""
        for row in rows:
            self.add_row(row)

    @Slot(object, int)
    def run_started(self, _job: object, total: int) -> None:
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(0)

    @Slot(object)
    def run_progress(self, progress: BatchProgress) -> None:
        self.bar.setRange(0, max(progress.total, 1))
        self.bar.setValue(progress.done)
        left = ("" if progress.left_s is None
                else f" · about {format_duration(progress.left_s)} left")
        self.status.setText(f"{progress.done} of {progress.total}{left} · "
                            f"{Path(progress.current).name}")

    @Slot(object)
    def add_row(self, row: BatchRow) -> None:
        """Append a row to the table."""
        index = self.table.rowCount()
        self.table.insertRow(index)
        time = seconds_text(row.seconds) if row.status == "finished" else ""
        status = row.status if not row.error else f"{row.status}: {row.error}"
        for column, text in enumerate((Path(row.path).name, row.question, row.conclusion,
                                       row.confidence, time, status)):
            item = QTableWidgetItem(text)
            item.setData(RUN_ROLE, row.run_id)
            item.setToolTip(row.path if column == 0 else text)
            self.table.setItem(index, column, item)

    @Slot(object)
    def run_finished(self, summary: BatchSummary) -> None:
        self.summary = summary
        self._end()
        parts = [f"{summary.answered} answered"]
        if summary.already_done:
            parts.append(f"{summary.already_done} already in the file")
        if bad := len(summary.bad_files):
            parts.append("1 file is not an image it can read" if bad == 1
                         else f"{bad} files are not images it can read")
        if summary.failed:
            parts.append(f"{summary.failed} failed")
        head = "Stopped" if summary.cancelled else "Done"
        self.status.setText(f"{head}: {', '.join(parts)} in {seconds_text(summary.seconds)}, "
                            f"{summary.image_encodes} images encoded. Results: {self.out}")
        if not summary.cancelled:
            self.bar.setValue(self.bar.maximum())

    @Slot(str)
    def run_failed(self, message: str) -> None:
        self._end()
        self.status.setText(f"The folder could not be asked about: {message}")

    def open_row(self, row: int) -> bool:
        """Open the row's answer in the main window; False when it has none to open."""
        item = self.table.item(row, 0)
        run_id = item.data(RUN_ROLE) if item is not None else -1
        if run_id is None or run_id < 0:
            self.status.setText("That row has no answer in the history to open.")
            return False
        self.open_run.emit(int(run_id))
        return True

    def _stop(self) -> None:
        self.stop_button.setEnabled(False)
        self.status.setText("Stopping after the answer being written…")
        self.stop_requested.emit()

    def _end(self) -> None:
        self.running = False
        self.stop_button.setEnabled(False)
        if self.bar.maximum() == 0:
            self.bar.setRange(0, 1)
        self.ended.emit()
