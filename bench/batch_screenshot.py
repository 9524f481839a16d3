"""The README's picture of File → Ask About a Folder…: the real window and the demo model.

Usage::

    export STAGEWISE_DATA_DIR=$(mktemp -d) STAGEWISE_CONFIG_DIR=$(mktemp -d)
    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python bench/batch_screenshot.py \
        docs/screenshot-batch.png

Ten of the demo's test puzzles and a text file are copied to a temporary folder, which the
window's folder run asks two questions; once it has ended, the folder's window (its
progress, the table) is saved to the given PNG. It exits 1 if the run did not end well.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from stagewise.desktop.folder_dialog import FolderRequest
from stagewise.desktop.main_window import MainWindow
from stagewise.models.storage.app_settings import AppSettings

DEMO_TEST = Path(__file__).resolve().parents[1] / "models" / "data" / "demo" / "test" / "images"
QUESTIONS = ("How many circles are there?", "What color is the square?")
TIMEOUT_S = 600


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    target = Path(argv[0])
    app = QApplication.instance() or QApplication([])
    folder = Path(tempfile.mkdtemp()) / "puzzles"
    folder.mkdir()
    for picture in sorted(DEMO_TEST.glob("test-00000?-*.png")):
        shutil.copy(picture, folder)
    (folder / "notes.txt").write_text("not a picture\n")
    window = MainWindow(AppSettings(auto_beam=False))
    window.resize(1280, 800)
    window.show()
    batch = window.start_folder(FolderRequest(folder, QUESTIONS, folder / "results.csv"))
    if batch is None:
        print("batch_screenshot: the folder did not start", file=sys.stderr)
        return 1
    batch.resize(1100, 560)
    loop = QEventLoop()
    batch.ended.connect(loop.quit)
    QTimer.singleShot(TIMEOUT_S * 1000, loop.quit)
    loop.exec()
    for _ in range(10):
        app.processEvents()
    summary = batch.summary
    ok = summary is not None and not summary.cancelled and summary.answered == 20
    saved = batch.grab().save(str(target))
    print(batch.status.text())
    window.close()
    return 0 if ok and saved else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
