"""Every window fits the screen, frame and title bar included, and nothing in it is cut
(issue 30, point 5): in the real window, offscreen."""

from __future__ import annotations

import os
import subprocess
import sys

from PySide6.QtCore import QMargins, QRect, QSize, QTimer
from PySide6.QtWidgets import QApplication

from stagewise.desktop.settings_dialog import SettingsDialog
from stagewise.desktop.widgets import ASSUMED_FRAME, fitted_size, frame_margins
from tests.desktop import test_main_window as shared

# the real window's fixtures, shared with its own tests
settings = shared.settings  # make_window and folders: conftest


def outer(window) -> QRect:
    """The window with its frame and title bar, as :func:`frame_margins` leaves room for."""
    return window.geometry().marginsAdded(frame_margins(window))


def test_fitted_size_leaves_room_for_the_frame():
    laptop = QSize(1024, 640)
    assert fitted_size(QSize(1280, 800), laptop, QMargins(1, 30, 1, 1)) == QSize(1022, 609)
    assert fitted_size(QSize(500, 400), laptop, QMargins(1, 30, 1, 1)) == QSize(500, 400)


def test_the_window_and_preferences_fit_the_screen_with_their_frames(qtbot, make_window,
                                                                     settings):
    window = make_window(settings)  # a first run: no saved geometry
    area = window.screen().availableGeometry()  # the offscreen screen: 800 × 600
    assert frame_margins(window).top() >= ASSUMED_FRAME.top()
    assert area.contains(outer(window)), (outer(window), area)
    window.resize(area.size())  # as large as the screen: fitted back on the next show
    window.hide()
    window.show()
    assert area.contains(outer(window)), (outer(window), area)

    dialog = SettingsDialog(window.settings, window)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    page = dialog.pages.widget(0)  # the tallest: the model and the remote model
    qtbot.waitUntil(lambda: page.verticalScrollBar().maximum() == 0)  # room: all of it shown
    assert area.contains(outer(dialog)), (outer(dialog), area)
    ok = dialog.ok_button
    corner = ok.mapToGlobal(ok.rect().bottomRight())
    assert area.contains(corner) and ok.isVisible()
    dialog.close()


def test_a_saved_geometry_larger_than_the_screen_is_fitted(qtbot, make_window, settings):
    window = make_window(settings)
    window.resize(2000, 1400)
    window.close()
    again = make_window(window.settings)  # restores 2000 × 1400 onto 800 × 600
    area = again.screen().availableGeometry()
    assert area.contains(outer(again)), (outer(again), area)


def test_the_about_box_fits_too(qtbot, make_window, settings):
    """The About box, like every message box, is sized by Qt to its text: it fits."""
    window = make_window(settings)
    seen: list[QRect] = []

    def look() -> None:
        box = QApplication.activeModalWidget()
        if box is None:
            QTimer.singleShot(10, look)
            return
        seen.append(outer(box))
        box.close()

    QTimer.singleShot(0, look)
    window._about()
    assert seen and window.screen().availableGeometry().contains(seen[0])


def test_nothing_is_cut_at_900x600(tmp_path):
    """The screenshot command's check, at the smallest size, on a real answer: the window,
    each Preferences page, the model manager, Diagnostics and the help pages fit, and no
    button, check box, chip or wrapped text is cut."""
    done = subprocess.run(
        [sys.executable, "-m", "stagewise.desktop.screenshots", "--check",
         "--sizes", "900x600", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=dict(os.environ), check=False)
    assert "cut:" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    assert not list(tmp_path.iterdir())  # --check saves no pictures
