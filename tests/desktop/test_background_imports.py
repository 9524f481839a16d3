"""The model library's slow imports (huggingface_hub, httpx) run off the window's thread.

Set up on the window's thread just after launch they took 250 ms of it, while the user may
be typing (``bench/gui_latency.py``: the idle window's longest gap, 180-270 ms when they
landed in it). A fresh interpreter, since this one has imported them long ago.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import os, sys, threading
from pathlib import Path
os.environ["QT_QPA_PLATFORM"] = "offscreen"
importers = []

class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "huggingface_hub":
            importers.append(threading.current_thread().name)
        return None

sys.meta_path.insert(0, Watch())
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
app = QApplication([])
from stagewise.desktop.main_window import MainWindow
from stagewise.models.storage.app_settings import AppSettings
folder = Path(sys.argv[3])
window = MainWindow(AppSettings(model=Path(sys.argv[1]), mmproj=Path(sys.argv[2])),
                    settings_path=folder / "settings.json", history_folder=folder / "history")
window.show()
poll = QTimer(interval=20)
poll.timeout.connect(lambda: window.model_setup is not None and app.quit())
poll.start()
QTimer.singleShot(60_000, app.quit)
app.exec()
window.close()
print(",".join(importers), window.model_setup is not None)
"""


def test_the_model_library_is_imported_off_the_window_thread(tiny_pair, tmp_path: Path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_pair.model),
                           str(tiny_pair.mmproj), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    importers, set_up = done.stdout.split()
    assert importers == "stagewise-import"  # once, and not by the window's thread
    assert set_up == "True"  # the first-run panel and downloads were set up after it
