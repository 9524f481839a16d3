"""File → Ask About a Folder…: which folder, which questions, and where the rows go.

The dialog only collects the request (:class:`FolderRequest`); the main window hands it
to the engine thread and shows the run in a :class:`~stagewise.desktop.batch_window.
BatchWindow`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from stagewise.desktop.widgets import muted_label
from stagewise.models.batch.results import FORMATS

RESULTS_NAME = "stagewise-results.csv"
"""The results file a folder gets unless another is chosen (inside the folder, which the
batch then leaves out of its files)."""


@dataclass(frozen=True)
class FolderRequest:
    """What the dialog asks for."""

    folder: Path
    questions: tuple[str, ...]
    out: Path


class AskFolderDialog(QDialog):
    """Choose a folder, type questions (one a line) and a results file."""

    def __init__(self, parent: QWidget | None = None, *, folder: Path | None = None,
                 questions: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Ask About a Folder")
        self.resize(620, 380)
        self.folder = QLineEdit(self)
        self.folder.setPlaceholderText("the folder of images")
        self.folder.setAccessibleName("Folder")
        browse_folder = QPushButton("&Browse…", self)
        browse_folder.clicked.connect(self._choose_folder)
        self.questions = QPlainTextEdit(self)
        self.questions.setPlaceholderText("One question a line; each is asked about every "
                                          "image")
        self.questions.setAccessibleName("Questions")
        self.questions.setPlainText(questions)
        self.out = QLineEdit(self)
        self.out.setPlaceholderText("results.csv or results.jsonl")
        self.out.setAccessibleName("Results file")
        browse_out = QPushButton("C&hoose…", self)
        browse_out.clicked.connect(self._choose_out)
        self.problem = muted_label("", self)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel, self)
        self.ask_button = self.buttons.addButton("&Ask", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(browse_folder)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out, 1)
        out_row.addWidget(browse_out)
        form = QFormLayout()
        form.addRow("&Folder:", folder_row)
        form.addRow("&Questions:", self.questions)
        form.addRow("&Results file:", out_row)
        layout = QVBoxLayout(self)
        layout.addLayout(form, 1)
        layout.addWidget(muted_label(
            "Each image is encoded once for all its questions. The rows (path, question, "
            "conclusion, confidence, seconds, status) are written as each answer ends; "
            "asking again into the same file skips the rows already there.", self))
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)
        for edit in (self.folder, self.out):
            edit.textChanged.connect(self._check)
        self.folder.textChanged.connect(self._suggest_out)
        self.questions.textChanged.connect(self._check)
        if folder is not None:
            self.folder.setText(str(folder))
        self._check()

    def request(self) -> FolderRequest | None:
        """What was asked for, or None while something is missing or wrong."""
        return self._request()[0]

    def set_request(self, folder: Path, questions: str, out: Path) -> None:
        """Fill the dialog (as a person would type it)."""
        self.folder.setText(str(folder))
        self.questions.setPlainText(questions)
        self.out.setText(str(out))

    def _request(self) -> tuple[FolderRequest | None, str]:
        folder = Path(self.folder.text().strip()).expanduser()
        questions = tuple(dict.fromkeys(line.strip() for line in
                                        self.questions.toPlainText().splitlines()
                                        if line.strip()))
        out_text = self.out.text().strip()
        if not self.folder.text().strip():
            return None, "Choose a folder."
        if not folder.is_dir():
            return None, f"{folder} is not a folder."
        if not questions:
            return None, "Type at least one question."
        if not out_text:
            return None, "Choose a results file."
        out = Path(out_text).expanduser()
        if not out.is_absolute():
            out = folder / out
        if out.suffix.lower() not in FORMATS:
            return None, "The results file's name must end in .csv or .jsonl."
        return FolderRequest(folder, questions, out), ""

    def _check(self) -> None:
        request, problem = self._request()
        self.ask_button.setEnabled(request is not None)
        self.problem.setText(problem)

    def _suggest_out(self) -> None:
        """A results file inside the chosen folder, until one is typed."""
        if not self.out.isModified():
            folder = self.folder.text().strip()
            self.out.setText(str(Path(folder) / RESULTS_NAME) if folder else "")

    def _choose_folder(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Folder of images",
                                                  self.folder.text())
        if chosen:
            self.folder.setText(chosen)

    def _choose_out(self) -> None:
        chosen, _ = QFileDialog.getSaveFileName(
            self, "Results file", self.out.text(), "CSV (*.csv);;JSON Lines (*.jsonl)")
        if chosen:
            self.out.setText(chosen)
            self.out.setModified(True)
