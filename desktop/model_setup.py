"""The window's way to a real model: the first-run panel, and the background download.

:class:`ModelSetup` belongs to the main window (made once the window is up, since the model
library loads ``huggingface_hub``). It owns the :class:`~stagewise.desktop.downloads.Downloads`
that the first-run panel and the model manager share, shows it in the status bar, and decides
when the first-run panel shows: while no real model is set up (no model file or server in the
settings, nothing in the library). While the panel shows, the demo notice stays hidden: the
panel says the same and offers the download itself; hiding the panel brings the notice back.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Slot

from stagewise.desktop.download_status import DownloadStatus
from stagewise.desktop.downloads import Downloads
from stagewise.desktop.import_files import choose_model_files
from stagewise.models.errors import StagewiseError
from stagewise.models.hardware import Hardware, detect_hardware
from stagewise.models.library.catalogue import CatalogueEntry, load_catalogue
from stagewise.models.library.demo import demo_pair
from stagewise.models.library.installed import InstalledModel, Library
from stagewise.models.library.recommend import recommend

if TYPE_CHECKING:
    from stagewise.desktop.main_window import MainWindow

__all__ = ["ModelSetup"]


class ModelSetup(QObject):
    """The first-run panel and the background download of one main window."""

    def __init__(self, window: MainWindow, *, library: Library | None = None,
                 hardware: Hardware | None = None) -> None:
        super().__init__(window)
        self.window = window
        self.library = library or Library()
        self.hardware = hardware or detect_hardware()
        self.catalogue = self._load_catalogue()
        self.downloads = Downloads(self.library, parent=self)
        self.status = DownloadStatus(self.downloads)
        window.statusBar().addPermanentWidget(self.status)
        self.welcome = window.welcome
        self._recommend()
        self.welcome.download.connect(self.download)
        self.welcome.import_files.connect(self.import_files)
        self.welcome.more_models.connect(window.open_models)
        self.welcome.closed.connect(self.refresh)
        self.downloads.changed.connect(self._on_changed)
        self.downloads.finished.connect(self._on_installed)
        self.downloads.failed.connect(self._on_failed)
        self.refresh()

    def _recommend(self) -> None:
        """Tell the panel what to suggest (and whether a download of it can resume)."""
        entry = recommend(self.catalogue, self.hardware)
        self.welcome.set_recommendation(
            entry, demo=demo_pair() is not None,
            resumable=entry is not None and self.library.partial_bytes(entry.id) > 0)

    def _load_catalogue(self) -> tuple[CatalogueEntry, ...]:
        try:
            return load_catalogue()
        except StagewiseError as error:
            self.window.show_message(f"The model catalogue cannot be read: {error}")
            return ()

    # -- the first-run panel ---------------------------------------------------------------

    def needs_model(self) -> bool:
        """Whether no real model is set up: none chosen, no server, none in the library."""
        settings = self.window.settings
        if settings.model is not None or settings.server_settings() is not None:
            return False
        try:
            return not any(model.present for model in self.library.installed())
        except StagewiseError:
            return True

    @Slot()
    def refresh(self) -> None:
        """Show or hide the first-run panel, and the demo notice in its place when hidden."""
        self.welcome.show_for(self.needs_model())
        if not self.welcome.isHidden():
            self.window.demo_notice.hide()
        else:
            loaded = self.window.loaded
            self.window.demo_notice.show_for(loaded is not None and bool(loaded.note))

    # -- actions ---------------------------------------------------------------------------

    @Slot(object)
    def download(self, entry: CatalogueEntry) -> bool:
        """Start downloading ``entry`` in the background (its progress in the status bar)."""
        self.window.hide_message()
        self.window.notice.dismiss()  # an earlier failure's advice is moot once retried
        if not self.downloads.start(entry):
            self.window.show_message("Another model is downloading: pause or cancel it first "
                                     "(in the status bar).")
            return False
        return True

    @Slot()
    def import_files(self) -> InstalledModel | None:
        """Ask for a model's files, add them to the library and answer with them."""
        chosen = choose_model_files(self.window)
        if chosen is None:
            return None
        return self.use_files(*chosen)

    def use_files(self, model: Path, mmproj: Path | None = None) -> InstalledModel | None:
        """Add local files to the library and answer with them; None (said why) if they
        are not a loadable pair."""
        try:
            added = self.library.import_files(model, mmproj)
        except StagewiseError as error:
            self.window.show_message(f"Those files cannot be used: {error}")
            return None
        self.window.hide_message()
        self.window.use_model(added)
        self.refresh()
        return added

    def shut_down(self) -> None:
        """The window closes: stop a running download (its partial file stays)."""
        self.downloads.shut_down()

    # -- download signals ------------------------------------------------------------------

    @Slot()
    def _on_changed(self) -> None:
        if not self.downloads.active:
            self._recommend()  # a cancelled download leaves nothing to resume
        self.welcome.set_busy(self.downloads.active)

    @Slot(object)
    def _on_installed(self, model: InstalledModel) -> None:
        settings = self.window.settings
        if settings.model is None and settings.server_settings() is None:
            self.window.use_model(model)
            self.window.statusBar().showMessage(
                f"{model.name} is installed and answers from now on", 8000)
        else:
            self.window.statusBar().showMessage(
                f"{model.name} is installed: choose it in Settings → Models", 8000)
        self.refresh()

    @Slot(object, str)
    def _on_failed(self, entry: CatalogueEntry, advice: str) -> None:
        self.window.show_notice(f"{entry.name} was not downloaded. {advice}")
