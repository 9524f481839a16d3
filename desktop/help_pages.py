"""Help → Keyboard Shortcuts and Help → Getting Started."""

from __future__ import annotations

import html

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QMenuBar,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from stagewise.desktop.widgets import keep_on_screen

GETTING_STARTED = """
<h3>Getting started</h3>
<ol>
<li><b>Give it a picture.</b> Drag an image onto the window, paste one (Ctrl+V), or open a
file (Ctrl+O).</li>
<li><b>Ask a question</b> about it in the box below the picture and press Enter. You can ask
again about the same picture: it is read only once.</li>
<li><b>Watch the four stages</b> on the right: Summary (what the question needs), Caption
(what in the picture matters), Reasoning, and the Conclusion, the answer.</li>
<li><b>A wider beam</b> (the number beside the question) writes several candidates for each
stage and keeps the best; "candidates" on a stage shows them and why one won.</li>
<li><b>Use a real model.</b> The built-in demo only knows shape puzzles. The panel at the
top recommends a model for this computer (Download, or Import Files… for files you have);
Settings → Models lists them all (or uses a server). Downloads go on in the background, with
Pause and Cancel in the status bar. Past questions stay in the history on the left.</li>
</ol>
"""


def shortcut_rows(menus: QMenuBar) -> list[tuple[str, str, str]]:
    """(menu, command, keys) for every menu command that has a shortcut."""
    rows = []
    for menu_action in menus.actions():
        menu = menu_action.menu()
        if menu is None:
            continue
        for act in menu.actions():
            keys = act.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            if keys:
                rows.append((menu_action.text().replace("&", ""),
                             act.text().replace("&", "").rstrip("…"), keys))
    return rows


def shortcuts_html(menus: QMenuBar) -> str:
    cells = "".join(f"<tr><td>{html.escape(menu)}</td><td>{html.escape(command)}</td>"
                    f"<td><b>{html.escape(keys)}</b></td></tr>"
                    for menu, command, keys in shortcut_rows(menus))
    return ("<h3>Keyboard shortcuts</h3><table cellpadding='4'>"
            "<tr><th align='left'>Menu</th><th align='left'>Command</th>"
            f"<th align='left'>Keys</th></tr>{cells}</table>"
            "<p>Enter asks; Shift+Enter starts a new line in the question.</p>")


class HelpPage(QDialog):
    """A page of help text."""

    def __init__(self, title: str, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(520, 460)
        keep_on_screen(self)  # frame and title bar included
        self.browser = QTextBrowser(self)
        self.browser.setAccessibleName(title)
        self.browser.setHtml(text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser)
        layout.addWidget(buttons)
