"""Text from a model, a server, a file or a question is shown as written, never as markup.

Qt renders a label or a tooltip whose text looks like HTML as rich text: a server's error
page became a heading, a link to ``file:///etc/passwd`` and an image in the window. The
window here answers through the loopback fake server of :mod:`tests.remote_fake` with
markup in the question, the image's file name, the model's answer and the server's
error, and then every widget is walked: wherever that text is, what Qt shows must still
hold the tags as text. Also: an unusable server address in the settings is one message,
not a window that stays "loading".
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6 import QtGui
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QTextDocument
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QTextEdit,
    QWidget,
)

from stagewise.desktop.main_window import MainWindow
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.run_view import RunStatus
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.remote.http import ServerError
from stagewise.models.remote.server import ServerSettings
from stagewise.models.stages import STAGES
from stagewise.models.storage.app_settings import AppSettings, load_settings
from tests.desktop.test_main_window import ANSWER_MS
from tests.remote_fake import FakeServer

WORD = "HOSTILE"
QUESTION = f"Which <b>{WORD}</b> shape? <img src='file:///etc/hosts'>"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


def shown(text: str, text_format: Qt.TextFormat = Qt.TextFormat.AutoText) -> str:
    """What Qt shows of ``text`` in ``text_format``: rich text is rendered to its words."""
    rich = text_format == Qt.TextFormat.RichText or (
        text_format == Qt.TextFormat.AutoText and QtGui.Qt.mightBeRichText(text))
    if not rich:
        return text
    document = QTextDocument()
    document.setHtml(text)
    return document.toPlainText()


def rendered_as_markup(raw: str, text_format: Qt.TextFormat = Qt.TextFormat.AutoText) -> bool:
    """Whether the hostile word in ``raw`` is shown without the tag written before it."""
    return WORD in raw and f">{WORD}" not in shown(raw, text_format)


def markup_shown(window: QWidget) -> tuple[list[str], int]:
    """Where the window renders hostile text as markup, and how many places show it."""
    problems: list[str] = []
    places = 0

    def check(where: str, raw: str, text_format: Qt.TextFormat = Qt.TextFormat.AutoText
              ) -> None:
        nonlocal places
        if WORD in raw:
            places += 1
            if rendered_as_markup(raw, text_format):
                problems.append(f"{where}: {raw[:120]!r}")

    for widget in [window, *window.findChildren(QWidget)]:
        name = f"{type(widget).__name__} {widget.objectName() or widget.accessibleName()!r}"
        check(f"{name} tooltip", widget.toolTip())
        if isinstance(widget, QLabel):
            check(name, widget.text(), widget.textFormat())
        elif isinstance(widget, QTextEdit | QPlainTextEdit):
            if WORD in widget.toPlainText() and f">{WORD}" not in widget.toPlainText():
                problems.append(f"{name}: rendered {widget.toPlainText()[:120]!r}")
            places += WORD in widget.toPlainText()
        elif isinstance(widget, QAbstractButton | QLineEdit):
            places += WORD in widget.text()  # shown as written, always
        elif isinstance(widget, QGroupBox):
            places += WORD in widget.title()
        if isinstance(widget, QAbstractItemView) and widget.model() is not None:
            model = widget.model()
            for row in range(model.rowCount(QModelIndex())):
                index = model.index(row, 0)
                check(f"{name} row {row} tooltip",
                      str(model.data(index, Qt.ItemDataRole.ToolTipRole) or ""))
    return problems, places


@pytest.fixture
def hostile_image(image_file, tmp_path) -> Path:
    path = tmp_path / f"<b>{WORD}<b>.png"
    shutil.copy(image_file, path)
    return path


def window_on(qtbot, tmp_path, url: str, **changes) -> MainWindow:
    settings = replace(AppSettings(), server=ServerSettings(url, stage_mode=StageMode.NATIVE),
                       search=SearchSettings(beam=2, max_stage_tokens=16), auto_beam=False,
                       **changes)
    window = MainWindow(settings, settings_path=tmp_path / "settings.json",
                        history_folder=tmp_path / "history")
    qtbot.addWidget(window)
    window.show()
    return window


def test_model_server_file_and_question_text_is_never_rendered_as_markup(
        qtbot, fake, tmp_path, hostile_image):
    window = window_on(qtbot, tmp_path, fake.url("markup"))
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=ANSWER_MS)
    window.image_pane.open_file(hostile_image)
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS) as blocker:
        window.ask(QUESTION)
    assert blocker.args[0].status is RunStatus.FINISHED
    for stage in STAGES:
        assert WORD in window.reasoning.card(stage).text_shown()
    first = window.reasoning.card(STAGES[0])
    first.candidates_button.click()  # the candidates' texts, shown too
    qtbot.wait(50)
    problems, places = markup_shown(window)
    assert not problems, "\n".join(problems)
    assert places >= 8  # the stages, the candidates, the history row and its tooltip

    # the server fails with an HTML error page: the message is its text, not a page
    window.apply_settings(replace(window.settings, server=replace(
        window.settings.server, url=fake.url("html-error"))))
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=ANSWER_MS)
    assert window.settings.server.url.endswith("/html-error")
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS) as blocker:
        window.ask("What now?")
    assert blocker.args[0].status is RunStatus.FAILED
    assert window.message.isVisible() and "HTTP 500" in window.message.text()
    assert window.message.textFormat() == Qt.TextFormat.PlainText
    problems, _ = markup_shown(window)
    assert not problems, "\n".join(problems)
    window.close()


def test_a_server_error_page_in_the_message_is_shown_as_text(qtbot, fake, tmp_path):
    """The message label shows whatever a server or a file wrote; a page in it stays text
    (the fake's error page holds a heading, a file link and an image)."""
    window = window_on(qtbot, tmp_path, fake.url("ok"))
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=ANSWER_MS)
    page = f"<h1>{WORD}</h1><a href='file:///etc/passwd'>details</a>"
    window.show_message(page)
    assert not rendered_as_markup(window.message.text(), window.message.textFormat())
    problems, places = markup_shown(window)
    assert not problems and places >= 1
    window.close()


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:99999",
                                 "http://127.0.0.1:abc"])
def test_an_unusable_address_never_reaches_the_window(tmp_path, url):
    with pytest.raises(ServerError, match="is not a server address"):
        ServerSettings(url)  # the window's settings cannot hold one
    path = tmp_path / "settings.json"  # and a settings file holding one is put right
    path.write_text(json.dumps({"version": 3, "server": {"url": url, "kind": "openai"}}))
    settings = load_settings(path)
    assert settings.server.url == "" and settings.server.kind == "openai"
    assert (tmp_path / "settings.json.bad").is_file()


def test_the_settings_dialog_refuses_an_unusable_address_and_keeps_a_login_apart(
        qtbot, tmp_path, monkeypatch):
    from stagewise.desktop.settings_dialog import SettingsDialog
    from stagewise.models.disk.paths import CONFIG_DIR_ENV
    from stagewise.models.remote.keys import KeyStore

    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "config"))
    dialog = SettingsDialog(AppSettings())
    qtbot.addWidget(dialog)
    group = dialog.remote_group
    group.enabled.setChecked(True)
    group.url.setText("http://[::1")
    assert "brackets" in (group.problem() or "") and not dialog.ok_button.isEnabled()
    assert dialog.status_label.textFormat() == Qt.TextFormat.PlainText
    group.url.setText("http://ana:s3cret@gpu-box:8080")
    assert group.problem() is None and dialog.ok_button.isEnabled()
    dialog.accept()
    assert dialog.settings().server.url == "http://gpu-box:8080"
    assert KeyStore.logins().get("http://gpu-box:8080") == "ana:s3cret"
    assert "s3cret" not in str(dialog.settings())
