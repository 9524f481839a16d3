"""Model downloads that run in the background, owned by the main window.

:class:`Downloads` pulls one catalogue model at a time in a thread of its own (never the
engine's: answering goes on meanwhile), whoever started it: the first-run panel or the
model manager, which may close while it runs. It can be paused (the transfer stops and the
partial file stays), resumed (a new pull continues from the partial file, with a ``Range``
request) and cancelled (the transfer stops and what it left on disk is deleted).
"""

from __future__ import annotations

import enum
import threading
import time

from PySide6.QtCore import QObject, QThread, Signal, Slot

from stagewise.desktop import threads
from stagewise.desktop.download_advice import advice
from stagewise.models.errors import Cancelled, StagewiseError
from stagewise.models.library.catalogue import CatalogueEntry
from stagewise.models.library.hub_transfer import DownloadProgress
from stagewise.models.library.installed import InstalledModel, Library

__all__ = ["Downloads", "State"]

SHUTDOWN_MS = 5000
"""How long closing the window waits for a download to stop."""

PROGRESS_MS = 100
"""The window hears of a download's progress at most this often."""


class State(enum.Enum):
    """Where the download is."""

    IDLE = "idle"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    CANCELLING = "cancelling"


class _Pull(QObject):
    """Runs one :meth:`Library.pull` on the download thread."""

    progress = Signal(object)  # DownloadProgress
    finished = Signal(object)  # InstalledModel
    failed = Signal(object)  # StagewiseError
    stopped = Signal()

    def __init__(self, library: Library, entry: CatalogueEntry, cancel: threading.Event,
                 endpoint: str | None) -> None:
        super().__init__()
        self.library, self.entry, self.cancel, self.endpoint = library, entry, cancel, endpoint
        self._last = 0.0

    @Slot()
    def run(self) -> None:
        try:
            model = self.library.pull(self.entry, progress=self._progress, cancel=self.cancel,
                                      endpoint=self.endpoint)
        except Cancelled:
            self.stopped.emit()
        except StagewiseError as error:
            self.failed.emit(error)
        except OSError as error:
            self.failed.emit(StagewiseError(f"{error.strerror or error}"))
        else:
            self.finished.emit(model)

    def _progress(self, p: DownloadProgress) -> None:
        now = time.monotonic()
        if now - self._last >= PROGRESS_MS / 1000 or p.done >= p.total:
            self._last = now
            self.progress.emit(overall(self.entry, p))


def overall(entry: CatalogueEntry, p: DownloadProgress) -> DownloadProgress:
    """A file's progress as progress of the whole model (projector first, then the model),
    named by the model; the file's own when the catalogue lacks a size."""
    if entry.total_bytes <= 0:
        return p
    before = entry.mmproj.size if p.file == entry.model.name else 0
    done = before + p.done
    left = max(entry.total_bytes - done, 0)
    seconds = (0.0 if left == 0 else left / p.bytes_per_s if p.bytes_per_s > 0 else None)
    return DownloadProgress(entry.name, done, entry.total_bytes, p.bytes_per_s, seconds)


class Downloads(QObject):
    """The window's one background download (see the module docstring).

    Signals:
        changed: The state or the entry changed (started, paused, resumed, ended).
        progress: A :class:`DownloadProgress` of the whole model.
        finished: The model is installed (an :class:`InstalledModel`).
        failed: The download failed: the entry and what to do next (one paragraph).
    """

    changed = Signal()
    progress = Signal(object)
    finished = Signal(object)
    failed = Signal(object, str)

    def __init__(self, library: Library, *, endpoint: str | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.library, self.endpoint = library, endpoint
        self.state = State.IDLE
        self.entry: CatalogueEntry | None = None
        self.last: DownloadProgress | None = None
        self.error = ""  # what the last failure means and what to do next
        self.detail = ""  # the last failure in the network's own words
        self._thread: QThread | None = None
        self._pull: _Pull | None = None
        self._cancel: threading.Event | None = None

    # -- what the user asks ------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether a download is under way or paused (a second one must wait)."""
        return self.state is not State.IDLE

    def start(self, entry: CatalogueEntry) -> bool:
        """Start downloading ``entry`` (resuming any partial file); False if busy."""
        if self.active or entry.repo is None:
            return False
        self.entry, self.error, self.detail = entry, "", ""
        self.last = None
        self._run()
        return True

    def pause(self) -> None:
        """Stop the transfer and keep the partial file for :meth:`resume`."""
        if self.state is State.RUNNING and self._cancel is not None:
            self._cancel.set()
            self._set(State.PAUSING)

    def resume(self) -> None:
        """Continue a paused download from its partial file."""
        if self.state is State.PAUSED and self.entry is not None:
            self._run()

    def cancel(self) -> None:
        """Stop the download and delete what it left on disk."""
        if self.state in (State.RUNNING, State.PAUSING) and self._cancel is not None:
            self._cancel.set()
            self._set(State.CANCELLING)
        elif self.state is State.PAUSED:
            self._discard()
            self._end()

    def shut_down(self, timeout_ms: int = SHUTDOWN_MS) -> None:
        """Stop a running download for good (the window closes); the partial file stays, so
        the next pull of the model resumes it."""
        if self._cancel is not None:
            self._cancel.set()
        if self._thread is not None:
            self._thread.quit()
            if not self._thread.wait(timeout_ms):
                threads.keep_alive(self._thread, self._pull)
        self._thread = self._pull = self._cancel = None
        self.state = State.IDLE

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        assert self.entry is not None
        self._cancel = threading.Event()
        self._thread = QThread()
        self._thread.setObjectName("stagewise-download")
        self._pull = _Pull(self.library, self.entry, self._cancel, self.endpoint)
        self._pull.moveToThread(self._thread)
        self._thread.started.connect(self._pull.run)
        self._pull.progress.connect(self._on_progress)
        self._pull.finished.connect(self._on_finished)
        self._pull.failed.connect(self._on_failed)
        self._pull.stopped.connect(self._on_stopped)
        threads.register_thread(self._thread)
        self._set(State.RUNNING)
        self._thread.start()

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.quit()
            if not self._thread.wait(SHUTDOWN_MS):
                threads.keep_alive(self._thread, self._pull)
        self._thread = self._pull = self._cancel = None

    @Slot(object)
    def _on_progress(self, p: DownloadProgress) -> None:
        self.last = p
        self.progress.emit(p)

    @Slot(object)
    def _on_finished(self, model: InstalledModel) -> None:
        self._join()
        self._end()
        self.finished.emit(model)

    @Slot(object)
    def _on_failed(self, error: StagewiseError) -> None:
        entry = self.entry
        self._join()
        assert entry is not None
        self.error, self.detail = advice(error, entry, self.endpoint), str(error)
        self._end()
        self.failed.emit(entry, self.error)

    @Slot()
    def _on_stopped(self) -> None:
        self._join()
        if self.state is State.CANCELLING:
            self._discard()
            self._end()
        else:
            self._set(State.PAUSED)

    def _discard(self) -> None:
        if self.entry is None:
            return
        try:
            self.library.discard_download(self.entry.id)
        except StagewiseError as error:
            self.error = str(error)

    def _end(self) -> None:
        self.entry = None
        self.last = None
        self._set(State.IDLE)

    def _set(self, state: State) -> None:
        self.state = state
        self.changed.emit()
