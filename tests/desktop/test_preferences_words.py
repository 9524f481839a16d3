"""Preferences speaks the person's words and offers only what this machine and build have
(issue 30, point 7): opened from the real window's menu, offscreen."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLabel,
    QLineEdit,
    QWidget,
)

from stagewise.desktop.settings_dialog import (
    DEMO_NOTE,
    DEMO_PLACEHOLDER,
    NO_GPU_TEXT,
    BuildOffers,
    SettingsDialog,
)
from stagewise.models.inference.cpu_buffers import AMX_BUFFER, offered_extra_buffers
from stagewise.models.inference.llama_runtime import supports_gpu_offload
from stagewise.models.storage.app_settings import AppSettings
from tests.desktop import test_main_window as shared

# the real window's fixtures, shared with its own tests
settings = shared.settings  # make_window and folders: conftest

JARGON = ("Scorer", "Stages written", "Prompted", "SWIRES", "offload", "Auto (")


def words(dialog: SettingsDialog) -> list[str]:
    """Every text the dialog shows, page by page: tabs, labels, check boxes, the rows of
    its lists, placeholders."""
    texts: list[str] = []
    for page in range(dialog.pages.count()):
        dialog.pages.setCurrentIndex(page)
        texts.append(dialog.pages.tabText(page))
        for widget in dialog.findChildren(QWidget):
            if not widget.isVisibleTo(dialog):
                continue
            if isinstance(widget, QComboBox):
                texts += [widget.itemText(i) for i in range(widget.count())]
            elif isinstance(widget, QLineEdit):
                texts += [widget.text(), widget.placeholderText()]
            elif isinstance(widget, QLabel | QAbstractButton | QAbstractSpinBox):
                texts.append(widget.text())
    dialog.pages.setCurrentIndex(0)
    return [t.replace("&", "") for t in texts if t]


def open_preferences(qtbot, window) -> SettingsDialog:
    """Settings → Preferences… as the person opens it; the dialog, looked at while modal."""
    seen: list[SettingsDialog] = []
    looked: list[list[str]] = []

    def look() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, SettingsDialog):
            QTimer.singleShot(10, look)
            return
        seen.append(dialog)
        looked.append(words(dialog))
        dialog.reject()

    QTimer.singleShot(0, look)
    action = next(a for menu in window.menuBar().actions() for a in menu.menu().actions()
                  if a.text().replace("&", "") == "Preferences…")
    action.trigger()
    assert seen, "Preferences did not open"
    seen[0].shown_words = looked[0]  # type: ignore[attr-defined]
    return seen[0]


def test_preferences_in_the_persons_words(qtbot, make_window, settings):
    window = make_window(settings)
    dialog = open_preferences(qtbot, window)
    shown = " | ".join(dialog.shown_words)
    for jargon in JARGON:
        assert jargon not in shown, jargon
    assert "Second model:" in shown and "Answer format:" in shown
    assert "Any model: Stagewise asks for the four parts" in shown
    assert "Summary, Caption, Reasoning and Conclusion" in dialog.remote_group.mode.toolTip()
    assert "checks each candidate" in dialog.scorer_field.edit.toolTip()


def test_the_demo_placeholder_is_whole_and_explained(qtbot, make_window, settings):
    window = make_window(settings)
    dialog = SettingsDialog(AppSettings(), window)  # the built-in model
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    edit = dialog.model_edit
    assert edit.text() == "" and edit.placeholderText() == DEMO_PLACEHOLDER
    room = edit.contentsRect().width() - 8  # the line edit's own text margins
    assert edit.fontMetrics().horizontalAdvance(DEMO_PLACEHOLDER) <= room
    note = dialog.model_field.note
    assert note.isVisible() and note.text() == DEMO_NOTE
    dialog.set_model_file(settings.model)  # a real model: no note
    assert note.isHidden()


def test_only_what_this_build_and_cpu_offer(qtbot, make_window, settings):
    window = make_window(settings)
    dialog = open_preferences(qtbot, window)
    here = BuildOffers(gpu_offload=supports_gpu_offload(),
                       amx=AMX_BUFFER in offered_extra_buffers())
    assert dialog.offers == here
    shown = " | ".join(dialog.shown_words)
    assert ("AMX" in shown) == here.amx
    assert (NO_GPU_TEXT in shown) == (not here.gpu_offload)
    assert ("32 layers" in shown) == here.gpu_offload  # the spin box: only with a GPU

    for offers in (BuildOffers(gpu_offload=False, amx=False),
                   BuildOffers(gpu_offload=True, amx=True)):
        other = SettingsDialog(window.settings, window, offers=offers)
        qtbot.addWidget(other)
        other.show()
        other.pages.setCurrentIndex(2)  # This computer
        assert other.gpu_combo.isVisible() == offers.gpu_offload
        assert other.gpu_spin.isVisible() == offers.gpu_offload
        assert other.no_gpu_label.isVisible() == (not offers.gpu_offload)
        assert other.amx_check.isVisible() == offers.amx
        assert other.settings() == window.settings  # what is not offered is kept as it was
        other.close()
