"""``python -m stagewise.desktop.screenshots``: the window and each dialog, at screen sizes.

For each size (1440×900, 1024×640 and 900×600 unless ``--sizes`` says otherwise) a fresh
process opens the real window on Qt's offscreen platform with a screen of exactly that
size and empty data and settings folders, as on a first run; it answers the built-in
question about the built-in example picture with the built-in demo model (beam 4, so
that each stage has candidates), then shows Preferences (each of its pages), the model
manager, Diagnostics and the two help pages, one after the other. Each is saved as
``<name>-<W>x<H>.png`` in the output folder (``docs/screenshots`` by default) and checked
for what a person would see cut: a window that does not fit the screen with a frame and
title bar (:func:`~stagewise.desktop.widgets.frame_margins`), a button or check box
narrower than its text, a chip whose text is shortened, a wrapped text shorter than its
lines, a control outside its window. The command prints each problem and exits 1 if there
is any (``--check`` checks without saving pictures).

A screenshot shows the window's inside; the frame and title bar the window system adds
are left room for, not drawn.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

SIZES = ((1440, 900), (1024, 640), (900, 600))
DEFAULT_OUT = Path("docs") / "screenshots"
ANSWER_TIMEOUT_S = 300.0


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def main(argv: list[str] | None = None) -> int:
    """Take (or ``--check``) the screenshots at each size; 0 when nothing is cut."""
    parser = argparse.ArgumentParser(prog="python -m stagewise.desktop.screenshots",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"folder for the pictures (default {DEFAULT_OUT})")
    parser.add_argument("--sizes", default=",".join(f"{w}x{h}" for w, h in SIZES),
                        help="screen sizes, comma-separated (default %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="only check that nothing is cut; save no pictures")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the per-size child process
    args = parser.parse_args(argv)
    if args.one:
        return _take(_size(args.one), None if args.check else args.out)
    status = 0
    for size in (_size(s) for s in args.sizes.split(",") if s.strip()):
        status |= _run_at(size, args.out, args.check)
    return status


def _run_at(size: tuple[int, int], out: Path, check: bool) -> int:
    """One child process with an offscreen screen of ``size`` and empty folders."""
    width, height = size
    with tempfile.TemporaryDirectory(prefix="stagewise-shots-") as tmp:
        screen = Path(tmp) / "screen.json"
        screen.write_text(json.dumps({"screens": [{
            "name": f"Screen {width}x{height}", "x": 0, "y": 0, "width": width,
            "height": height, "logicalDpi": 96, "logicalBaseDpi": 96, "dpr": 1}]}))
        env = dict(os.environ, QT_QPA_PLATFORM=f"offscreen:configfile={screen}",
                   STAGEWISE_DATA_DIR=str(Path(tmp) / "data"),
                   STAGEWISE_CONFIG_DIR=str(Path(tmp) / "config"))
        command = [sys.executable, "-m", "stagewise.desktop.screenshots",
                   "--one", f"{width}x{height}", "--out", str(out)]
        if check:
            command.append("--check")
        return subprocess.run(command, env=env, check=False).returncode


def _take(size: tuple[int, int], out: Path | None) -> int:
    """In the child: answer, then save and check the window and each dialog."""
    from PySide6.QtWidgets import QApplication

    from stagewise.desktop import threads
    from stagewise.desktop.app import SELF_TEST_QUESTION
    from stagewise.desktop.main_window import MainWindow
    from stagewise.models.library.demo import example_image
    from stagewise.models.storage.app_settings import load_settings

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Stagewise")
    window = MainWindow(load_settings().with_beam_choice(4))
    window.show()
    _wait(lambda: window.loaded is not None, "the model to load")
    window.image_pane.open_file(example_image())
    window.question_box.set_question(SELF_TEST_QUESTION)
    done: list[object] = []
    window.answer_done.connect(done.append)
    if not window.ask(SELF_TEST_QUESTION):
        print(f"screenshots: could not ask: {window.message.text()}", file=sys.stderr)
        return 1
    _wait(lambda: bool(done), "the answer")
    _settle()
    problems: list[str] = []
    tag = f"{size[0]}x{size[1]}"
    for name, widget in _views(window):
        _settle()
        problems += [f"{tag} {name}: {p}" for p in clipped(widget)]
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            path = out / f"{name}-{tag}.png"
            if not widget.grab().save(str(path)):
                problems.append(f"{tag} {name}: could not save {path}")
            else:
                print(f"screenshots: {path} ({widget.width()} × {widget.height()})")
    window.close()
    if threads.running_threads():
        sys.stdout.flush()
        os._exit(1)
    for problem in problems:
        print(f"screenshots: cut: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _views(window: object) -> Iterator[tuple[str, object]]:
    """The window, then each dialog shown in turn (closed after its picture)."""
    from stagewise.desktop.main_window import MainWindow
    from stagewise.desktop.settings_dialog import SettingsDialog

    assert isinstance(window, MainWindow)
    yield "window", window
    dialog = SettingsDialog(window.settings, window)
    dialog.show()
    for page in range(dialog.pages.count()):
        dialog.pages.setCurrentIndex(page)
        name = dialog.pages.tabText(page).lower().replace(" ", "-").replace("&", "")
        yield f"preferences-{name}", dialog
    dialog.close()
    manager = window.open_models()
    yield "models", manager
    manager.close()
    diagnostics = window.open_diagnostics()
    _wait(lambda: diagnostics.ready, "the diagnostics report")
    yield "diagnostics", diagnostics
    diagnostics.close()
    for page in ("started", "keys"):
        help_page = window.open_help(page)
        yield f"help-{page}", help_page
        help_page.close()


def clipped(root: object) -> list[str]:
    """What a person would see cut in the window ``root``: see the module's docstring."""
    from PySide6.QtCore import QRect
    from PySide6.QtWidgets import (
        QAbstractScrollArea,
        QCheckBox,
        QLabel,
        QPushButton,
        QRadioButton,
        QWidget,
    )

    from stagewise.desktop.widgets import Chip, ElidedLabel, frame_margins

    assert isinstance(root, QWidget)
    problems: list[str] = []
    area = root.screen().availableGeometry()
    frame = frame_margins(root)
    outer = root.geometry().marginsAdded(frame)
    if not area.contains(outer):
        problems.append(f"the window with its frame ({outer.width()} × {outer.height()} at "
                        f"{outer.x()}, {outer.y()}) does not fit the screen's "
                        f"{area.width()} × {area.height()}")
    inside = QRect(0, 0, root.width(), root.height())
    for widget in root.findChildren(QWidget):
        if not widget.isVisibleTo(root) or widget.window() is not root:
            continue
        name = widget.accessibleName() or type(widget).__name__
        at = QRect(widget.mapTo(root, widget.rect().topLeft()), widget.size())
        if (not inside.contains(at) and widget.width() > 0 and widget.height() > 0
                and not _in_scroll_area(widget, root, QAbstractScrollArea)):
            problems.append(f"{name} lies outside the window")  # a scroll area scrolls to it
        if isinstance(widget, Chip) and "…" in widget.text():
            problems.append(f"chip {widget.full_text()!r} reads {widget.text()!r}")
        elif isinstance(widget, QCheckBox | QRadioButton | QPushButton) and widget.text():
            need = _text_need(widget, QPushButton)
            if widget.width() < need:
                problems.append(f"{name} {widget.text()!r} is {widget.width()} px wide, "
                                f"needs {need}")
        elif isinstance(widget, QLabel) and not isinstance(widget, ElidedLabel) \
                and widget.text() and widget.pixmap().isNull():
            if widget.wordWrap():
                need = widget.heightForWidth(widget.width())
                if need > widget.height() + 1:
                    problems.append(f"{name} {widget.text()[:40]!r} is {widget.height()} px "
                                    f"high, needs {need}")
            elif widget.width() < widget.minimumSizeHint().width():
                problems.append(f"{name} {widget.text()[:40]!r} is {widget.width()} px wide, "
                                f"needs {widget.minimumSizeHint().width()}")
    return problems


def _text_need(button: object, push: type) -> int:
    """The width a button needs to show its text whole: a push button its text and
    margins (the style asks 80 px of any push button, which is not needed to read it), a
    check box its size hint (the box and the text)."""
    if isinstance(button, push):
        text = button.text().replace("&", "")  # type: ignore[attr-defined]
        return button.fontMetrics().horizontalAdvance(text) + 12  # type: ignore[attr-defined]
    return button.sizeHint().width()  # type: ignore[attr-defined]


def _in_scroll_area(widget: object, root: object, kind: type) -> bool:
    parent = widget.parentWidget()  # type: ignore[attr-defined]
    while parent is not None and parent is not root:
        if isinstance(parent, kind):
            return True
        parent = parent.parentWidget()
    return False


def _settle(rounds: int = 20) -> None:
    """Let layouts (the wrapped grids fix their heights a few passes later) settle."""
    from PySide6.QtWidgets import QApplication

    for _ in range(rounds):
        QApplication.processEvents()
        time.sleep(0.01)


def _wait(ready: Callable[[], bool], what: str) -> None:
    from PySide6.QtWidgets import QApplication

    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshots: gave up waiting for {what}")
        QApplication.processEvents()
        time.sleep(0.02)


if __name__ == "__main__":
    raise SystemExit(main())
