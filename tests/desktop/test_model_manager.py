"""The model manager, offscreen, downloading from a loopback fake hub for real."""

from __future__ import annotations

from dataclasses import replace

import pytest
from PySide6.QtCore import Qt

from stagewise.desktop import threads
from stagewise.desktop.downloads import State
from stagewise.desktop.main_window import MainWindow
from stagewise.desktop.model_manager import ModelManager
from stagewise.models.hardware import detect_hardware
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.library.catalogue import load_catalogue
from stagewise.models.library.installed import Library
from stagewise.models.storage.app_settings import AppSettings
from tests.library_fixtures import ENTRY_ID, REPO

TIMEOUT_MS = 60_000


@pytest.fixture
def manager(qtbot, served_catalogue, tmp_path):
    dialog = ModelManager(Library(tmp_path / "models"), load_catalogue(served_catalogue.path),
                          detect_hardware())
    qtbot.addWidget(dialog)
    dialog.show()
    yield dialog
    dialog.close()


def test_download_with_progress_then_use(qtbot, manager, served_catalogue, tiny_pair):
    served_catalogue.hub.set_faults(REPO, tiny_pair.model.name, slow=0.005)
    manager.select(ENTRY_ID)
    assert manager.download_button.isEnabled() and not manager.use_button.isEnabled()
    row = manager.rows.index(manager.selected())
    assert manager.table.item(row, 2).text() == "yes"
    qtbot.mouseClick(manager.download_button, Qt.MouseButton.LeftButton)
    assert manager.downloading and manager.table.item(row, 3).text() == "downloading…"
    seen: list[str] = []
    manager.downloads.progress.connect(lambda p: seen.append(manager.progress_label.text()))
    qtbot.waitUntil(lambda: not manager.downloading, timeout=TIMEOUT_MS)
    assert any(" of " in text and "/s" in text for text in seen)
    assert "is installed" in manager.progress_label.text()
    assert manager.table.item(row, 3).text() == "installed"
    with qtbot.waitSignal(manager.model_chosen, timeout=TIMEOUT_MS) as chosen:
        qtbot.mouseClick(manager.use_button, Qt.MouseButton.LeftButton)
    assert chosen.args[0].model.read_bytes() == tiny_pair.model.read_bytes()
    assert manager.table.item(row, 3).text() == "in use"


def test_pause_keeps_the_partial_and_resume_continues_from_it(qtbot, manager,
                                                              served_catalogue, tiny_pair):
    hub = served_catalogue.hub
    hub.set_faults(REPO, tiny_pair.model.name, slow=0.1)
    manager.select(ENTRY_ID)
    manager.download_selected()
    qtbot.waitUntil(lambda: manager.downloads.last is not None
                    and manager.downloads.last.done > tiny_pair.mmproj.stat().st_size,
                    timeout=TIMEOUT_MS)
    qtbot.mouseClick(manager.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: manager.downloads.state is State.PAUSED, timeout=TIMEOUT_MS)
    assert "paused" in manager.progress_label.text()
    assert manager.pause_button.text() == "&Resume"
    row = manager.rows.index(manager.selected())
    assert manager.table.item(row, 3).text() == "paused"
    assert manager.library.partial_bytes(ENTRY_ID) > tiny_pair.mmproj.stat().st_size
    hub.set_faults(REPO, tiny_pair.model.name, slow=0)
    hub.clear_requests()
    qtbot.mouseClick(manager.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not manager.downloading, timeout=TIMEOUT_MS)
    assert "is installed" in manager.progress_label.text()
    assert any(r.range for r in hub.downloads())
    installed = manager.library.get(ENTRY_ID)
    assert installed.model.read_bytes() == tiny_pair.model.read_bytes()


def test_cancel_deletes_what_was_downloaded(qtbot, manager, served_catalogue, tiny_pair):
    served_catalogue.hub.set_faults(REPO, tiny_pair.model.name, slow=0.1)
    manager.select(ENTRY_ID)
    manager.download_selected()
    qtbot.waitUntil(lambda: manager.library.partial_bytes(ENTRY_ID)
                    > tiny_pair.mmproj.stat().st_size, timeout=TIMEOUT_MS)
    qtbot.mouseClick(manager.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not manager.downloading, timeout=TIMEOUT_MS)
    assert not (manager.library.folder / ENTRY_ID).exists()
    assert manager.library.find(ENTRY_ID) is None
    assert manager.download_button.isEnabled()


def test_a_failed_download_says_why(qtbot, manager, served_catalogue, tiny_pair):
    served_catalogue.hub.set_faults(REPO, tiny_pair.mmproj.name, status=404)
    manager.select(ENTRY_ID)
    manager.download_selected()
    qtbot.waitUntil(lambda: not manager.downloading, timeout=TIMEOUT_MS)
    assert manager.message.text().startswith("Tiny test VLM was not downloaded. ")
    assert "Import Files…" in manager.message.text()
    assert "404" in manager.message.toolTip()  # the hub's own words, for a bug report
    assert tiny_pair.mmproj.name in manager.message.text()


def test_import_delete_and_bad_files(qtbot, manager, tiny_pair, tmp_path):
    added = manager.import_files(tiny_pair.model)
    assert added is not None and manager.selected().id == added.id
    assert manager.use_button.isEnabled()
    manager.delete_selected(confirm=False)
    assert all(row.id != added.id for row in manager.rows)
    assert tiny_pair.model.exists()
    cut = tmp_path / "cut-model.gguf"
    cut.write_bytes(tiny_pair.model.read_bytes()[:3000])
    assert manager.import_files(cut, tiny_pair.mmproj) is None
    assert "cut-model.gguf" in manager.message.text()


def test_a_built_process_reward_model_is_shown_as_one_and_not_offered_to_answer(
        qtbot, tiny_pair, tmp_path):
    import shutil

    library = Library(tmp_path / "models")
    home = library.folder / "vl-prm-3b"
    home.mkdir(parents=True)
    catalogue = load_catalogue()
    entry = next(e for e in catalogue if e.id == "vl-prm-3b")
    library.add_built(entry, shutil.copy(tiny_pair.model, home / "vl-prm-3b-Q8_0.gguf"),
                      shutil.copy(tiny_pair.mmproj, home / "mmproj-vl-prm-3b-f16.gguf"))
    dialog = ModelManager(library, catalogue, detect_hardware())
    qtbot.addWidget(dialog)
    dialog.select("vl-prm-7b")  # not built: says how
    assert dialog.table.item(dialog.rows.index(dialog.selected()), 0).text() == (
        "VL-PRM 7B (process reward model)")
    assert "build it locally" in [dialog.table.item(i, 3).text() for i in range(len(dialog.rows))]
    assert "recipes.prm convert HF_FOLDER --id vl-prm-7b" in dialog.details.text()
    dialog.select("vl-prm-3b")  # built and installed, yet it answers nothing
    assert "a process reward model" in dialog.details.text() and "does not answer" in (
        dialog.details.text())
    assert not dialog.use_button.isEnabled() and dialog.delete_button.isEnabled()
    dialog.select("llava-cot-local")
    assert "prompted stages" not in dialog.details.text() and "native stages" in (
        dialog.details.text())


def test_closing_mid_download_stops_it(qtbot, manager, served_catalogue, tiny_pair):
    served_catalogue.hub.set_faults(REPO, tiny_pair.model.name, slow=0.05)
    manager.select(ENTRY_ID)
    manager.download_selected()
    qtbot.waitUntil(lambda: " of " in manager.progress_label.text(), timeout=TIMEOUT_MS)
    manager.close()  # a manager without the window's downloads stops its own
    assert not manager.downloading and not threads.running_threads()


def test_the_window_uses_the_chosen_model(qtbot, served_catalogue, tiny_pair, tmp_path):
    window = MainWindow(AppSettings(model=tiny_pair.model, mmproj=tiny_pair.mmproj, auto_beam=False,
                                    engine=EngineSettings(threads=2, n_ctx=4096)),
                        settings_path=tmp_path / "settings.json",
                        history_folder=tmp_path / "history")
    qtbot.addWidget(window)
    try:
        qtbot.waitUntil(lambda: window.loaded is not None, timeout=TIMEOUT_MS)
        copy = tmp_path / "copy"
        copy.mkdir()
        for file in (tiny_pair.model, tiny_pair.mmproj):
            (copy / file.name).write_bytes(file.read_bytes())
        other = Library().import_files(copy / tiny_pair.model.name, name="Imported tiny")
        with qtbot.waitSignal(window.host.worker.model_loaded, timeout=TIMEOUT_MS) as loaded:
            window.use_model(other)
        assert loaded.args[0].model == other.model
        manager = window.open_models()
        assert any(row.id == other.id for row in manager.rows)
        manager.close()
    finally:
        window.close()


def test_use_a_server_opens_preferences_at_the_remote_model(qtbot, tiny_pair, tmp_path,
                                                           monkeypatch):
    from stagewise.desktop import settings_dialog

    settings = replace(AppSettings(), model=tiny_pair.model, mmproj=tiny_pair.mmproj)
    window = MainWindow(settings, settings_path=tmp_path / "settings.json",
                        history_folder=tmp_path / "history")
    qtbot.addWidget(window)
    opened: list[settings_dialog.SettingsDialog] = []

    def shown(dialog: settings_dialog.SettingsDialog) -> int:
        opened.append(dialog)
        return 0  # cancelled

    monkeypatch.setattr(settings_dialog.SettingsDialog, "exec", shown)
    manager = window.open_models()
    qtbot.mouseClick(manager.server_button, Qt.MouseButton.LeftButton)
    assert len(opened) == 1 and opened[0].remote_group.enabled.isChecked()
    assert window.settings.server.url == ""  # nothing changes until Preferences say OK
    window.close()


def test_a_catalogue_model_s_card_says_what_it_was_trained_for(qtbot, tmp_path):
    catalogue = load_catalogue()
    dialog = ModelManager(Library(tmp_path / "models"), catalogue, detect_hardware())
    qtbot.addWidget(dialog)
    entry = next(e for e in catalogue if e.id == "qwen2.5-vl-3b-q4")
    dialog.select(entry.id)
    shown = dialog.details.text()
    assert f"Trained for: {entry.trained_for}" in shown.replace("&#x27;", "'")
    assert "deserve less trust" in shown
