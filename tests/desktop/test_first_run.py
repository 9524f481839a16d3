"""The first run in the real window: the get-a-model panel, background downloads from a
loopback fake hub (progress in the status bar, past the manager's closing, pause and
resume, cancel), and what an offline download says to do next."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from stagewise.desktop.downloads import State
from stagewise.desktop.main_window import MainWindow
from stagewise.models.disk.paths import DATA_DIR_ENV
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.library import catalogue as catalogue_module
from stagewise.models.library.catalogue import CATALOGUE_ENV, load_catalogue, source_link
from stagewise.models.storage.app_settings import AppSettings
from tests.library_fixtures import ENTRY_ID, REPO, write_catalogue

TIMEOUT_MS = 60_000


@pytest.fixture(autouse=True)
def _own_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty model library per test (the session's data folder is shared)."""
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))


@pytest.fixture
def make_window(qtbot, tmp_path: Path) -> Iterator:
    windows: list[MainWindow] = []

    def make(settings: AppSettings | None = None) -> MainWindow:
        window = MainWindow(settings or AppSettings(engine=EngineSettings(threads=2)),
                            settings_path=tmp_path / "settings.json",
                            history_folder=tmp_path / "history")
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        qtbot.waitUntil(lambda: window.model_setup is not None and window.loaded is not None,
                        timeout=TIMEOUT_MS)
        return window

    yield make
    for window in windows:
        window.close()


def _downloaded_past_the_projector(window: MainWindow, tiny_pair) -> bool:
    setup = window.model_setup
    return setup.library.partial_bytes(ENTRY_ID) > tiny_pair.mmproj.stat().st_size


def test_the_demo_alone_gets_the_panel_whose_download_installs_and_uses_a_model(
        qtbot, make_window, served_catalogue, tiny_pair):
    served_catalogue.hub.set_faults(REPO, tiny_pair.model.name, slow=0.05)
    window = make_window()
    welcome, status = window.welcome, window.model_setup.status
    assert welcome.isVisible() and not window.demo_notice.isVisible()  # one banner, not two
    assert welcome.entry is not None and welcome.entry.id == ENTRY_ID
    assert "Tiny test VLM" in welcome.label.text() and "demo model" in welcome.label.text()
    assert welcome.download_button.isVisible() and welcome.import_button.isVisible()
    assert not status.isVisible()

    seen: list[str] = []
    window.model_setup.downloads.progress.connect(lambda _p: seen.append(status.label.text()))
    qtbot.mouseClick(welcome.download_button, Qt.MouseButton.LeftButton)
    assert status.isVisible() and not welcome.download_button.isEnabled()
    qtbot.waitUntil(lambda: 0 < status.bar.value() < status.bar.maximum(), timeout=TIMEOUT_MS)
    assert any(text.startswith("Downloading Tiny test VLM: ") and " of " in text
               for text in seen)
    with qtbot.waitSignal(window.host.worker.model_loaded, timeout=TIMEOUT_MS) as loaded:
        pass  # the download ends, and the new model loads in place of the demo
    installed = window.model_setup.library.get(ENTRY_ID)
    assert installed.model.read_bytes() == tiny_pair.model.read_bytes()
    assert loaded.args[0].model == installed.model and window.settings.model == installed.model
    assert not welcome.isVisible() and not status.isVisible()
    # the window's own slot for the load may run after this test's (queued across threads)
    qtbot.waitUntil(lambda: not window.demo_notice.isVisible(), timeout=TIMEOUT_MS)
    assert "Tiny test VLM is installed" in window.statusBar().currentMessage()


def test_no_panel_once_a_real_model_is_set_up(make_window, served_catalogue, tiny_pair):
    window = make_window(AppSettings(model=tiny_pair.model, mmproj=tiny_pair.mmproj,
                                     engine=EngineSettings(threads=2)))
    assert not window.welcome.isVisible()


def test_no_panel_when_the_library_has_a_model(make_window, served_catalogue, tiny_pair):
    from stagewise.models.library.installed import Library

    Library().import_files(tiny_pair.model)
    window = make_window()
    assert not window.welcome.isVisible()
    assert window.demo_notice.isVisible()  # the demo still answers: the notice says so


def test_hiding_the_panel_brings_back_the_demo_notice(qtbot, make_window, served_catalogue):
    window = make_window()
    assert window.welcome.isVisible() and not window.demo_notice.isVisible()
    qtbot.mouseClick(window.welcome.close_button, Qt.MouseButton.LeftButton)
    assert not window.welcome.isVisible() and window.demo_notice.isVisible()


def test_import_files_from_the_panel_uses_them(qtbot, make_window, served_catalogue, tiny_pair,
                                               monkeypatch):
    from stagewise.desktop import import_files

    asked: list[str] = []

    def chosen(_parent, title, *_args):
        asked.append(title)
        return str(tiny_pair.model), ""

    monkeypatch.setattr(import_files.QFileDialog, "getOpenFileName", chosen)
    window = make_window()
    with qtbot.waitSignal(window.host.worker.model_loaded, timeout=TIMEOUT_MS) as loaded:
        qtbot.mouseClick(window.welcome.import_button, Qt.MouseButton.LeftButton)
    assert asked == ["Import a model"]  # the projector beside it was found
    assert loaded.args[0].model == tiny_pair.model.resolve()
    assert not window.welcome.isVisible()


def test_the_download_goes_on_after_the_manager_closes(qtbot, make_window, served_catalogue,
                                                       tiny_pair):
    served_catalogue.hub.set_faults(REPO, tiny_pair.model.name, slow=0.1)
    window = make_window()
    manager = window.open_models()
    manager.select(ENTRY_ID)
    qtbot.mouseClick(manager.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: _downloaded_past_the_projector(window, tiny_pair),
                    timeout=TIMEOUT_MS)
    manager.close()
    downloads, status = window.model_setup.downloads, window.model_setup.status
    assert downloads.state is State.RUNNING and status.isVisible()
    before = downloads.last.done
    served_catalogue.hub.set_faults(REPO, tiny_pair.model.name, slow=0.01)
    qtbot.waitUntil(lambda: downloads.last is not None and downloads.last.done > before,
                    timeout=TIMEOUT_MS)
    assert "Downloading" in status.label.text()
    qtbot.waitUntil(lambda: not downloads.active, timeout=TIMEOUT_MS)
    installed = window.model_setup.library.get(ENTRY_ID)
    assert installed.model.read_bytes() == tiny_pair.model.read_bytes()


def test_pause_then_resume_finishes_with_a_correct_file(qtbot, make_window, served_catalogue,
                                                        tiny_pair):
    hub = served_catalogue.hub
    hub.set_faults(REPO, tiny_pair.model.name, slow=0.1)
    window = make_window()
    downloads, status = window.model_setup.downloads, window.model_setup.status
    qtbot.mouseClick(window.welcome.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: _downloaded_past_the_projector(window, tiny_pair),
                    timeout=TIMEOUT_MS)
    assert status.pause_button.text() == "Pause"
    qtbot.mouseClick(status.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: downloads.state is State.PAUSED, timeout=TIMEOUT_MS)
    folder = window.model_setup.library.folder / ENTRY_ID
    (partial,) = folder.glob(f"{tiny_pair.model.name}.*.incomplete")
    kept = partial.stat().st_size
    assert 0 < kept < tiny_pair.model.stat().st_size
    assert tiny_pair.model.read_bytes().startswith(partial.read_bytes())
    assert "paused" in status.label.text() and status.pause_button.text() == "Resume"
    assert status.isVisible()
    time.sleep(0.3)
    assert partial.stat().st_size == kept  # paused: nothing more arrives

    hub.set_faults(REPO, tiny_pair.model.name, slow=0)
    hub.clear_requests()
    qtbot.mouseClick(status.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not downloads.active, timeout=TIMEOUT_MS)
    resumed = hub.downloads()  # the model's rest only: the projector was whole already
    assert resumed and all(r.range == f"bytes={kept}-" for r in resumed)
    installed = window.model_setup.library.get(ENTRY_ID)
    assert installed.model.read_bytes() == tiny_pair.model.read_bytes()
    assert installed.mmproj.read_bytes() == tiny_pair.mmproj.read_bytes()
    assert not list(folder.glob("*.incomplete"))


def test_cancel_in_the_status_bar_deletes_the_partial_file(qtbot, make_window,
                                                           served_catalogue, tiny_pair):
    served_catalogue.hub.set_faults(REPO, tiny_pair.model.name, slow=0.1)
    window = make_window()
    downloads, status = window.model_setup.downloads, window.model_setup.status
    qtbot.mouseClick(window.welcome.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: _downloaded_past_the_projector(window, tiny_pair),
                    timeout=TIMEOUT_MS)
    qtbot.mouseClick(status.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not downloads.active, timeout=TIMEOUT_MS)
    assert not (window.model_setup.library.folder / ENTRY_ID).exists()
    assert not status.isVisible() and window.welcome.download_button.isEnabled()
    assert window.welcome.download_button.text() == "Download"


def test_closing_the_window_mid_download_keeps_the_partial_for_next_time(
        qtbot, make_window, served_catalogue, tiny_pair):
    served_catalogue.hub.set_faults(REPO, tiny_pair.model.name, slow=0.1)
    window = make_window()
    qtbot.mouseClick(window.welcome.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: _downloaded_past_the_projector(window, tiny_pair),
                    timeout=TIMEOUT_MS)
    library = window.model_setup.library
    window.close()
    assert library.partial_bytes(ENTRY_ID) > tiny_pair.mmproj.stat().st_size
    assert library.find(ENTRY_ID) is None
    again = make_window()  # the next launch offers to resume it
    assert again.welcome.download_button.text() == "Resume Download"


def test_an_offline_download_says_what_to_do_next(qtbot, make_window, tiny_pair, tmp_path,
                                                  monkeypatch):
    """No hub at all: huggingface.co's name does not resolve, as on a computer offline."""
    catalogue = write_catalogue(tmp_path / "catalogue.toml", tiny_pair)
    monkeypatch.setenv(CATALOGUE_ENV, str(catalogue))
    monkeypatch.setenv("HF_ENDPOINT", "http://stagewise-hub.invalid")
    window = make_window()
    downloads = window.model_setup.downloads
    qtbot.mouseClick(window.welcome.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not downloads.active, timeout=TIMEOUT_MS)
    text = window.notice.text()
    assert window.notice.isVisible()
    assert "offline" in text
    page = f"http://stagewise-hub.invalid/{REPO}/tree/main"
    assert page in text and tiny_pair.model.name in text and tiny_pair.mmproj.name in text
    assert "in a browser" in text and "Import Files…" in text
    assert "Errno" not in text and "Name or service" not in text
    assert "Name or service not known" in downloads.detail or "name resolution" in \
        downloads.detail.lower()
    assert window.welcome.download_button.isEnabled()  # ready to try again


def test_a_refused_connection_says_to_check_the_network_or_use_a_browser(
        qtbot, make_window, served_catalogue, tiny_pair, monkeypatch):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    window = make_window()
    qtbot.mouseClick(window.welcome.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.model_setup.downloads.active, timeout=TIMEOUT_MS)
    text = window.notice.text()
    assert "refused the connection" in text and "Download again" in text
    assert f"http://127.0.0.1:{port}/{REPO}/tree/main" in text and "Import Files…" in text


@pytest.mark.parametrize(("status", "words"), [(401, "log in"), (404, "no longer has")])
def test_hub_refusals_say_what_to_do_next(qtbot, make_window, served_catalogue, tiny_pair,
                                          status, words):
    served_catalogue.hub.set_faults(REPO, tiny_pair.mmproj.name, status=status)
    window = make_window()
    qtbot.mouseClick(window.welcome.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.model_setup.downloads.active, timeout=TIMEOUT_MS)
    text = window.notice.text()
    assert words in text and "Import Files…" in text and f"/{REPO}" in text
    assert tiny_pair.model.name in text and tiny_pair.mmproj.name in text


def test_the_model_manager_shows_sources_as_links(make_window, served_catalogue):
    from stagewise.desktop.model_manager import Row, _details

    window = make_window()
    manager = window.open_models()
    manager.select(ENTRY_ID)
    url, note = source_link(served_catalogue.entry.sources[0])
    assert f'<a href="{url}">' in manager.details.text() and note in manager.details.text()
    assert manager.details.openExternalLinks()
    manager.close()
    packaged = Path(catalogue_module.__file__).parents[1] / "data" / "catalogue.toml"
    for entry in load_catalogue(packaged):
        html = _details(Row(entry.id, entry, None))
        for source in entry.sources:
            assert f'<a href="{source_link(source)[0]}">' in html


def test_a_failed_download_stays_until_dismissed_and_links_its_page(
        qtbot, make_window, tiny_pair, image_file, tmp_path, monkeypatch):
    """Opening an image hides the window's passing messages, not a failed download's next
    steps; the page to download from is a link that opens in the browser."""
    catalogue = write_catalogue(tmp_path / "catalogue.toml", tiny_pair)
    monkeypatch.setenv(CATALOGUE_ENV, str(catalogue))
    monkeypatch.setenv("HF_ENDPOINT", "http://stagewise-hub.invalid")
    window = make_window()
    qtbot.mouseClick(window.welcome.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.model_setup.downloads.active, timeout=TIMEOUT_MS)
    notice = window.notice
    assert notice.isVisible() and "was not downloaded" in notice.text()
    page = f"http://stagewise-hub.invalid/{REPO}/tree/main"
    label = notice.label()
    assert f'<a href="{page}">{page}</a>' in label.text() and label.openExternalLinks()
    window.image_pane.open_file(image_file)  # a new image: the notice stays
    assert notice.isVisible() and "was not downloaded" in notice.text()
    window.ask("")  # a passing message comes and goes beside it
    assert notice.isVisible()
    qtbot.mouseClick(notice._close, Qt.MouseButton.LeftButton)
    assert notice.isHidden() and notice.text() == ""
