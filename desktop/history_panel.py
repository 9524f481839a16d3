"""The sidebar of past questions: search, select to restore, delete, export.

Above the list, a notice that stays says what is wrong with the history itself (a damaged
database kept aside, with a button to export what can still be read from it; a read-only
folder whose runs are shown but where new answers are not saved; a history that is off).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QIcon, QKeySequence, QPalette, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from stagewise.desktop.widgets import plain_label, plain_message, plain_tip
from stagewise.models.errors import StagewiseError
from stagewise.models.storage.history import (
    READ_ONLY_NOTICE,
    ExportSummary,
    History,
    HistoryEntry,
    export_readable,
)

_STATUS_WORDS = {
    "running": "answering…",
    "finished": "",
    "cancelled": "stopped",
    "failed": "failed",
    "interrupted": "interrupted",
}


THREAD_ROLE = Qt.ItemDataRole.UserRole + 1
"""An item's thread: the id of the thread's first run."""

THREAD_INDENT = "↳ "
"""Before a question asked after another about the same image, under its thread's first."""


class HistoryPanel(QWidget):
    """Lists saved runs, newest first; the questions asked one after another about one
    image (a thread) stay together, oldest first, the later ones indented. Reads through
    its own :class:`History` connection."""

    run_selected = Signal(int)
    export_requested = Signal(list)  # run ids
    deleted = Signal(list)  # run ids

    def __init__(self, history: History, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.history = history
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search questions and answers")
        self.search.setClearButtonEnabled(True)
        self.search.setAccessibleName("Search history")
        self.list = QListWidget()
        self.list.setAccessibleName("Past questions")
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setIconSize(QSize(40, 40))
        self.list.setUniformItemSizes(True)
        self.list.setWordWrap(False)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.empty = plain_label("Questions you ask are kept here.")  # or a file's error
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.notice = plain_label(history.notice or (READ_ONLY_NOTICE if history.read_only
                                                     else ""))
        self.notice.setWordWrap(True)
        self.notice.setAccessibleName("History notice")
        self.notice.setVisible(bool(self.notice.text()))
        self.export_damaged = QPushButton("Export What Can Still Be Read…")
        self.export_damaged.setToolTip("Save the runs that can still be read from the damaged "
                                       "history database as a JSON file")
        self.export_damaged.setVisible(history.damaged is not None)
        self.export_damaged.clicked.connect(self._ask_export_damaged)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.notice)
        layout.addWidget(self.export_damaged)
        layout.addWidget(self.search)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.empty, 1)
        self.setMinimumWidth(150)  # a 900 px screen has room for the stages too

        self.delete_action = QAction("Delete", self)
        self.delete_action.setShortcut(QKeySequence.StandardKey.Delete)
        self.delete_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.delete_action.triggered.connect(self.delete_selected)
        self.export_action = QAction("Export…", self)
        self.export_action.triggered.connect(
            lambda: self.export_requested.emit(self.selected_ids()))
        self.list.addAction(self.delete_action)

        self._debounce = QTimer(self, singleShot=True, interval=150)
        self._debounce.timeout.connect(self.refresh)
        self.search.textChanged.connect(self._debounce.start)
        self.list.itemSelectionChanged.connect(self._emit_selected)
        self.list.customContextMenuRequested.connect(self._menu)
        self._thumbs: dict[str, QIcon] = {}
        self.refresh()

    def selected_ids(self) -> list[int]:
        return [item.data(Qt.ItemDataRole.UserRole) for item in self.list.selectedItems()]

    def refresh(self, select: int | None = None, *, repair: bool = True) -> None:
        """Reload the list (keeping the selection, or selecting ``select``).

        Args:
            select: The run to select instead of the current selection.
            repair: First mark interrupted the runs whose writer died since (a killed
                ``stagewise ask``). Off when the window's own run has just started: that
                refresh happens while llama.cpp takes every core, and the check reads
                ``/proc`` for each running run.
        """
        keep = {select} if select is not None else set(self.selected_ids())
        problem = ""
        try:
            if repair:
                self.history.repair_interrupted()  # a writer that died since
            entries = self.history.entries(self.search.text().strip(), threads=True)
        except StagewiseError as error:
            problem = f"History cannot be read: {error}"
            entries = []
        self.list.blockSignals(True)
        self.list.clear()
        for entry in entries:
            item = self._item(entry)
            self.list.addItem(item)
            if entry.id in keep:
                item.setSelected(True)
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)
        self.list.setVisible(bool(entries))
        self.empty.setVisible(not entries)
        if problem:
            self.empty.setText(problem)
        elif not entries and self.search.text().strip():
            self.empty.setText("No past question matches.")
        elif not entries:
            self.empty.setText("Questions you ask are kept here.")

    def export_damaged_to(self, target: Path) -> ExportSummary:
        """Export what can still be read from the damaged database kept aside at startup.

        Args:
            target: The JSON file to write.

        Returns:
            What was written.

        Raises:
            StagewiseError: Nothing could be read, or the file could not be written.
        """
        assert self.history.damaged is not None
        return export_readable(self.history.damaged, target)

    def _ask_export_damaged(self) -> None:
        damaged = self.history.damaged
        if damaged is None:
            return
        name, _ = QFileDialog.getSaveFileName(
            self, "Export What Can Still Be Read", str(Path.home() / "stagewise-history.json"),
            "JSON (*.json)")
        if not name:
            return
        try:
            summary = self.export_damaged_to(Path(name))
        except StagewiseError as error:
            plain_message(self, QMessageBox.Icon.Warning, "Export from the damaged history",
                          str(error))
            return
        lost = (" Some damaged parts could not be read." if summary.unreadable else "")
        plain_message(self, QMessageBox.Icon.Information, "Export from the damaged history",
                      f"{summary.runs} past questions were saved to {summary.target}.{lost}")

    def delete_selected(self) -> None:
        ids = self.selected_ids()
        if not ids:
            return
        what = "this question" if len(ids) == 1 else f"these {len(ids)} questions"
        answer = QMessageBox.question(
            self, "Delete from history", f"Delete {what} and their answers?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel)
        if answer == QMessageBox.StandardButton.Yes:
            self.delete(ids)

    def delete(self, ids: list[int]) -> None:
        try:
            self.history.delete(ids)
        except StagewiseError as error:
            plain_message(self, QMessageBox.Icon.Warning, "Delete from history", str(error))
            return
        self.refresh()
        self.deleted.emit(ids)

    def _item(self, entry: HistoryEntry) -> QListWidgetItem:
        status = _STATUS_WORDS.get(entry.status, entry.status)
        when = _when(entry.created)
        search = f"beam {entry.beam}" if entry.beam and entry.beam > 1 else (
            "single pass" if entry.beam == 1 else "")
        answer = " ".join(entry.conclusion.split())
        answer = f"→ {answer[:60]}{'…' if len(answer) > 60 else ''}" if answer else ""
        kind = "follow-up" if entry.follow_up else ("asked again" if entry.thread else "")
        detail = " · ".join(part for part in (answer, kind, when, status, search, entry.model)
                            if part)
        indent = THREAD_INDENT if entry.thread is not None else ""
        item = QListWidgetItem(f"{indent}{entry.question}\n{' ' * len(indent)}{detail}")
        item.setData(Qt.ItemDataRole.UserRole, entry.id)
        item.setData(THREAD_ROLE, entry.thread_id)
        tip = entry.question + (f"\n\n{entry.conclusion}" if entry.conclusion else "")
        item.setToolTip(plain_tip(f"{tip}\n\n{entry.model} · {detail}"))
        if entry.thumbnail is not None:
            item.setIcon(self._thumb(str(entry.thumbnail)))
        return item

    def _thumb(self, path: str) -> QIcon:
        if path not in self._thumbs:
            self._thumbs[path] = QIcon(QPixmap(path))
        return self._thumbs[path]

    def _emit_selected(self) -> None:
        ids = self.selected_ids()
        if len(ids) == 1:
            self.run_selected.emit(ids[0])

    def _menu(self, pos: object) -> None:
        if not self.selected_ids():
            return
        menu = QMenu(self)
        menu.addAction(self.export_action)
        menu.addAction(self.delete_action)
        menu.exec(self.list.mapToGlobal(pos))


def _when(created: datetime) -> str:
    local = created.astimezone()
    now = datetime.now().astimezone()
    if local.date() == now.date():
        return local.strftime("%H:%M")
    if local.year == now.year:
        return local.strftime("%d %b")
    return local.strftime("%d %b %Y")
