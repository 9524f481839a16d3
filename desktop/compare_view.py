"""Question → Compare…: one question answered by two configurations, in two columns.

The dialog takes the two configurations as ``stagewise ask --compare`` does (``key=value``
pairs: ``beam=1`` and ``beam=4,select=verdict``), checked as they are typed
(:func:`~stagewise.models.reasoning.compare.parse_configuration`: a bad key or value is one
line under the field and the Compare button waits). The answers come from the engine thread
(:meth:`~stagewise.desktop.worker.EngineWorker.compare`); they are shown stage by stage, A
on the left and B on the right, the first stage whose text differs marked. A compared pair
from the history is shown the same way (:meth:`CompareDialog.show_pair`).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from stagewise.models.errors import StagewiseError
from stagewise.models.events import SearchResult
from stagewise.models.reasoning.compare import (
    SIDES,
    Comparison,
    Divergence,
    divergence,
    parse_configuration,
)
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.stages import STAGES
from stagewise.models.storage.export_view import search_line

__all__ = ["DEFAULT_CONFIGURATIONS", "MARK", "CompareDialog"]

DEFAULT_CONFIGURATIONS = ("beam=1", "beam=4")
"""What the fields hold the first time: a single pass against a beam of four."""

MARK = "◆"
"""Marks the stage where the two answers first differ."""


class CompareDialog(QDialog):
    """Two configurations, and their answers side by side.

    Signals:
        compare_requested: The two configurations' texts, when Compare is pressed.
        stop_requested: Stop was pressed while the answers are written.
    """

    compare_requested = Signal(str, str)
    stop_requested = Signal()

    def __init__(self, base: SearchSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Compare Two Searches")
        self.setObjectName("compare-dialog")
        self.resize(900, 640)
        self._base = base
        self._busy = False
        self.fields: list[QLineEdit] = []
        self.problems: list[QLabel] = []
        form = QFormLayout()
        for side, text in zip(SIDES, DEFAULT_CONFIGURATIONS, strict=True):
            field = QLineEdit(text, self)
            field.setAccessibleName(f"Configuration {side}")
            field.setPlaceholderText("key=value, … (beam, select, strategy, seed, model, …)")
            field.textChanged.connect(self._check)
            problem = QLabel(self)
            problem.setWordWrap(True)
            problem.setStyleSheet("color: #c5221f;")
            problem.hide()
            form.addRow(f"{side}:", field)
            form.addRow("", problem)
            self.fields.append(field)
            self.problems.append(problem)
        self.compare_button = QPushButton("&Compare", self)
        self.compare_button.setDefault(True)
        self.compare_button.clicked.connect(self._compare)
        self.stop_button = QPushButton("&Stop", self)
        self.stop_button.clicked.connect(self.stop_requested)
        self.stop_button.setEnabled(False)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.addButton(self.compare_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.stop_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Comparison status")
        self._grid_host = QWidget(self)
        self.grid = QGridLayout(self._grid_host)
        self.grid.setColumnStretch(1, 1)
        self.grid.setColumnStretch(2, 1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(self._grid_host)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addWidget(scroll, 1)
        layout.addWidget(buttons)
        self.cells: dict[tuple[str, int], QLabel] = {}
        self._check()

    # -- state ----------------------------------------------------------------------------

    def configurations(self) -> tuple[str, str]:
        """The two configurations as typed."""
        return self.fields[0].text().strip(), self.fields[1].text().strip()

    def set_base(self, base: SearchSettings) -> None:
        """The window's search, which both configurations change."""
        self._base = base
        self._check()

    def set_busy(self, busy: bool, text: str = "") -> None:
        """While the answers are written: Compare waits, Stop works, ``text`` says what."""
        self._busy = busy
        self.stop_button.setEnabled(busy)
        self._check()
        if text:
            self.status.setText(text)

    def set_progress(self, side: int, text: str) -> None:
        """Say what side ``side`` is doing."""
        self.status.setText(f"{SIDES[side]}: {text}")

    def set_failed(self, message: str) -> None:
        self.set_busy(False)
        self.status.setText(f"The comparison did not finish: {message}")

    def marked_stage(self) -> str:
        """The title of the stage marked as where the answers diverged ("" if none)."""
        for (name, _), label in self.cells.items():
            if name == "title" and MARK in label.text():
                return label.text().split(MARK)[0].strip()
        return ""

    def cell_text(self, stage_index: int, side: int) -> str:
        """The text shown for one stage (0 is the summary) of one side (0 is A)."""
        return self.cells[(SIDES[side], stage_index)].text()

    # -- showing --------------------------------------------------------------------------

    def show_comparison(self, comparison: Comparison) -> None:
        """Show a comparison just answered."""
        self.set_busy(False)
        self._show(comparison.results, comparison.divergence,
                   (f"{comparison.models[0]}: {search_line(comparison.results[0])}",
                    f"{comparison.models[1]}: {search_line(comparison.results[1])}"))

    def show_pair(self, first: SearchResult, second: SearchResult,
                  models: tuple[str, str] = ("", "")) -> None:
        """Show a compared pair from the history."""
        self._show((first, second), divergence(first, second),
                   tuple(f"{m}: {search_line(r)}" if m else search_line(r)
                         for m, r in zip(models, (first, second), strict=True)))

    def _show(self, results: tuple[SearchResult, SearchResult], where: Divergence,
              heads: tuple[str, ...]) -> None:
        while self.grid.count():
            item = self.grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.cells = {}
        for column, head in enumerate(heads, 1):
            label = QLabel(f"<b>{SIDES[column - 1]}</b> — {head}", self._grid_host)
            label.setWordWrap(True)
            self.grid.addWidget(label, 0, column)
        for row, stage in enumerate(STAGES, 1):
            diverged = stage is where.stage
            title = QLabel(f"{stage.title} {MARK}" if diverged else stage.title,
                           self._grid_host)
            title.setAlignment(Qt.AlignmentFlag.AlignTop)
            title.setToolTip("The first stage whose text differs" if diverged else "")
            if diverged:
                title.setStyleSheet("font-weight: 600; color: palette(highlight);")
            self.grid.addWidget(title, row, 0)
            self.cells[("title", row - 1)] = title
            for column, result in enumerate(results, 1):
                cell = QLabel(result.stages.get(stage, "").strip() or "—", self._grid_host)
                cell.setWordWrap(True)
                cell.setAlignment(Qt.AlignmentFlag.AlignTop)
                cell.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
                cell.setFrameShape(QFrame.Shape.StyledPanel)
                cell.setAccessibleName(f"{SIDES[column - 1]} {stage.title}")
                if diverged:
                    cell.setStyleSheet("border: 2px solid palette(highlight);")
                self.grid.addWidget(cell, row, column)
                self.cells[(SIDES[column - 1], row - 1)] = cell
        self.grid.setRowStretch(len(STAGES) + 1, 1)
        self.status.setText(where.describe()[:1].upper() + where.describe()[1:] + ".")

    # -- internals ------------------------------------------------------------------------

    def _check(self) -> bool:
        """Check both fields; a problem is one line under its field."""
        good = True
        for field, problem in zip(self.fields, self.problems, strict=True):
            try:
                parse_configuration(field.text(), self._base)
            except StagewiseError as error:
                problem.setText(str(error))
                problem.show()
                good = False
            else:
                problem.hide()
        self.compare_button.setEnabled(good and not self._busy)
        return good

    def _compare(self) -> None:
        if self._check() and not self._busy:
            self.compare_requested.emit(*self.configurations())
