"""Help → Diagnostics: ``stagewise doctor``'s report in a window, ready to copy.

The report is gathered in a background thread (its smoke answer loads the demo model in a
child process, a second or two), so the window stays responsive; Copy puts the whole text
on the clipboard for a bug report.
"""

from __future__ import annotations

from PySide6.QtCore import QThread, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from stagewise.desktop.cli import doctor
from stagewise.desktop.threads import keep_alive, register_thread
from stagewise.desktop.widgets import keep_on_screen
from stagewise.models.storage.app_settings import AppSettings


class _ReportThread(QThread):
    """Gathers the report off the GUI thread."""

    report_ready = Signal(str, bool)  # the text, whether the smoke answer passed

    def __init__(self, settings: AppSettings) -> None:
        super().__init__()
        self._settings = settings

    def run(self) -> None:
        try:
            text, ok = doctor.report(self._settings)
        except Exception as error:  # the dialog must say something, whatever failed
            text, ok = f"The report could not be gathered: {type(error).__name__}: {error}\n", \
                False
        self.report_ready.emit(text, ok)


class DiagnosticsDialog(QDialog):
    """Shows the doctor's report; Copy puts it on the clipboard."""

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Diagnostics")
        self.resize(820, 620)
        keep_on_screen(self)  # frame and title bar included
        self.status = QLabel("Gathering the report and answering a test question…", self)
        self.text = QPlainTextEdit(self)
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setAccessibleName("Diagnostics report")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        self.copy_button = QPushButton("&Copy", self)
        self.copy_button.setEnabled(False)
        self.copy_button.setToolTip("Copy the whole report, for a bug report")
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        self.copy_button.clicked.connect(self.copy)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.text, 1)
        layout.addWidget(buttons)

        self._thread = _ReportThread(settings)
        self._thread.report_ready.connect(self._show)
        register_thread(self._thread)
        self._thread.start()

    @property
    def ready(self) -> bool:
        """Whether the report has arrived."""
        return self.copy_button.isEnabled()

    def _show(self, text: str, ok: bool) -> None:
        self.text.setPlainText(text)
        self.status.setText("The smoke answer passed." if ok else
                            "The smoke answer FAILED: see the end of the report.")
        self.copy_button.setEnabled(True)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.text.toPlainText())
        self.status.setText("Copied to the clipboard.")

    def done(self, result: int) -> None:
        if self._thread.isRunning():
            self._thread.report_ready.disconnect(self._show)
            keep_alive(self._thread)  # it ends by itself once the smoke answer returns
        super().done(result)
