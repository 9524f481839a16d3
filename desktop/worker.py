"""The engine's own thread: loads the model and answers questions, one job at a time.

:class:`EngineHost` lives in the GUI thread and owns a QThread running an
:class:`EngineWorker`. Jobs go to the worker through a queued signal, so they run one at a
time in the order asked; the worker sends the core's frozen events back as Signals, and no
widget is touched off the GUI thread. Stop sets the job's ``threading.Event``, which the
engine's abort callback reads during every decode step (and the image encoder between
every few graph nodes).

An image is made ready before its question (:class:`PrepareJob`): when one is dropped,
pasted, opened or restored, the worker encodes it (or reads it from the cache of encoded
images) at once, so that the question then costs only its own tokens; a newer image, or a
question about another one, cancels a preparation still running.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from stagewise.desktop.threads import keep_alive, register_thread, start_in_background
from stagewise.models.errors import Cancelled, StagewiseError
from stagewise.models.events import AnswerFinished, Event, SearchResult, TokenStreamed
from stagewise.models.reasoning.auto_beam import AutoBeam
from stagewise.models.reasoning.conversation import Turn
from stagewise.models.storage.app_settings import AppSettings
from stagewise.models.storage.history.recorder import HistoryRecorder, RecordedRun, RunSettings

if TYPE_CHECKING:  # llama.cpp is imported in the engine thread, not at GUI start-up
    from stagewise.models.hardware import Hardware
    from stagewise.models.inference.images import Images, PreparedImage
    from stagewise.models.reasoning.search_settings import SearchSettings
    from stagewise.models.remote.server import ServerSettings
    from stagewise.models.session import Session

log = logging.getLogger("stagewise.worker")

FLUSH_S = 0.02
"""Streamed tokens are sent to the GUI in batches at most this often."""

@dataclass(frozen=True)
class LoadedModel:
    """What the status bar says about the loaded model."""

    name: str
    model: Path | None  # None for a model a server serves
    mmproj: Path | None
    note: str  # "" for a model the user chose; a warning for the built-in one
    gpu_offload: bool
    seconds: float
    server: str = ""  # the server's address when a server answers


@dataclass(frozen=True)
class AskJob:
    """One question: the original image bytes, the question and the settings to use.

    ``thread`` is the saved run it comes after about the same image (None: the first), and
    ``earlier`` the turns a follow-up has in context (questions and conclusions, oldest
    first; empty for a plain question). ``more_images`` are the further images of a question
    about several (original bytes and name, in order).
    """

    image_data: bytes
    image_name: str
    question: str
    settings: AppSettings
    seed: int = 0
    cancel: threading.Event = field(default_factory=threading.Event, compare=False)
    earlier: tuple[tuple[str, str], ...] = ()
    thread: int | None = None
    more_images: tuple[tuple[bytes, str], ...] = ()


@dataclass(frozen=True, eq=False)
class PrepareJob:
    """An image (or the several of one question) to make ready for its questions, with the
    settings it will be asked with."""

    image_data: bytes
    image_name: str
    settings: AppSettings
    cancel: threading.Event = field(default_factory=threading.Event)
    more_images: tuple[tuple[bytes, str], ...] = ()


@dataclass(frozen=True, eq=False)
class CompareJob:
    """One question answered by two configurations (:mod:`stagewise.models.compare`), each
    written as ``key=value`` pairs changing the window's search."""

    image_data: bytes
    image_name: str
    question: str
    configurations: tuple[str, str]
    settings: AppSettings
    cancel: threading.Event = field(default_factory=threading.Event)
    more_images: tuple[tuple[bytes, str], ...] = ()


def _images(image_data: bytes, image_name: str, more: tuple[tuple[bytes, str], ...]
            ) -> tuple[PreparedImage, ...]:
    """The job's images, read and checked (one, or the several of one question)."""
    from stagewise.models.inference.images import load_image

    return tuple(load_image(data, name=name)
                 for data, name in ((image_data, image_name), *more))


def _asked(images: tuple[PreparedImage, ...]) -> Images:
    """What a session is asked about: the image, or the tuple of several."""
    return images[0] if len(images) == 1 else images


@dataclass(frozen=True, eq=False)
class FolderJob:
    """Every file of a folder asked the same questions (File → Ask About a Folder…), the
    rows going to ``out`` (:func:`~stagewise.models.batch.runner.run_batch`)."""

    folder: Path
    questions: tuple[str, ...]
    out: Path
    settings: AppSettings
    cancel: threading.Event = field(default_factory=threading.Event)


class EngineWorker(QObject):
    """Runs in the engine thread; owns the engine and the history recorder."""

    model_loading = Signal(str)
    model_progress = Signal(float)
    model_loaded = Signal(object)  # LoadedModel
    model_failed = Signal(str)
    run_started = Signal(int)  # the history id, or -1 when it could not be saved
    events = Signal(list)  # core events, in order, batched
    run_failed = Signal(str, bool)  # the message; True if it was stopped, not broken
    run_finished = Signal(object)  # SearchResult
    notice = Signal(str)  # something went wrong but the answer goes on
    beam_chosen = Signal(str)  # beam "auto": the width it chose, and why
    image_ready = Signal(object, object)  # PrepareJob, PrefixReport (not ready: why)
    folder_started = Signal(object, int)  # FolderJob, the rows it makes
    folder_progress = Signal(object)  # BatchProgress
    folder_row = Signal(object)  # BatchRow, as written
    folder_finished = Signal(object)  # BatchSummary (cancelled: stopped)
    folder_failed = Signal(str)
    compare_progress = Signal(int, str)  # the side (0, 1) answering, and what it does
    compared = Signal(object, object)  # Comparison, the two history ids (-1: not saved)
    compare_failed = Signal(str)
    idle = Signal(object)  # the finished job's cancel event

    def __init__(self, history_folder: Path | None = None) -> None:
        super().__init__()
        self._recorder = HistoryRecorder(history_folder, warn=self._history_notice)
        self._session: Session | None = None
        self._server: tuple[ServerSettings, str] | None = None  # what _session is connected to
        self._loaded: LoadedModel | None = None
        self._hardware: Hardware | None = None
        self._auto = AutoBeam()  # beam "auto" for the loaded model; new with each model
        self._cache_mib: int | None = None  # the cap the session's prefix cache has

    # -- jobs (engine thread) -------------------------------------------------------------

    @Slot(object, object)
    def load(self, settings: AppSettings, cancel: threading.Event) -> None:
        """Load the model the settings name, unless it is loaded already."""
        try:
            self._ensure_engine(settings, cancel)
        except StagewiseError:
            pass  # model_failed has said why
        finally:
            self.idle.emit(cancel)

    @Slot(object)
    def ask(self, job: AskJob) -> None:
        """Answer one question; every outcome ends with run_finished or run_failed."""
        record = RecordedRun()  # not saved until the run starts
        try:
            images = _images(job.image_data, job.image_name, job.more_images)
            session = self._ensure_engine(job.settings, job.cancel)
            search = self._search(job)
            assert self._loaded is not None
            session.check_images(len(images))
            record = self._recorder.start(
                images[0], job.image_data, job.image_name, job.question, self._loaded.name,
                _run_settings(job.settings, search), thread=job.thread,
                follow_up=bool(job.earlier),
                more_images=[(image, data, name) for image, (data, name)
                             in zip(images[1:], job.more_images, strict=True)])
            self.run_started.emit(record.run_id)
            self._run(session, job, _asked(images), search, record)
        except Cancelled:
            self._fail(record, "stopped before the answer began", cancelled=True)
        except StagewiseError as error:
            self._fail(record, str(error))
        except (OSError, MemoryError) as error:
            self._fail(record, f"{type(error).__name__}: {error}")
        finally:
            self.idle.emit(job.cancel)

    @Slot(object)
    def prepare(self, job: PrepareJob) -> None:
        """Make an image ready to be asked about; says how in ``image_ready`` (a
        preparation that was cancelled says nothing)."""
        from stagewise.models.reasoning.search_backend import PrefixReport

        try:
            if job.cancel.is_set():  # another image came before this one's turn
                return
            images = _images(job.image_data, job.image_name, job.more_images)
            session = self._ensure_engine(job.settings, job.cancel)
            report = session.prepare(_asked(images), job.cancel,
                                     job.settings.search_settings())
        except Cancelled:
            return
        except (StagewiseError, OSError, MemoryError) as error:
            log.info("the image was not prepared: %s", error)  # the question will say
            report = PrefixReport("", reason=str(error))
        finally:
            self.idle.emit(job.cancel)
        self.image_ready.emit(job, report)

    @Slot(object)
    def ask_folder(self, job: FolderJob) -> None:
        """Ask every file of a folder the job's questions on the loaded model (loading it
        if needed), each image encoded once, every answer kept in the history and written
        as a row; ends with ``folder_finished`` or ``folder_failed``."""
        from stagewise.models.batch import (
            BatchJob,
            ResultsFile,
            folder_files,
            run_batch,
            settings_key,
        )

        try:
            out = job.out.absolute()
            files = tuple(p.absolute() for p in folder_files(job.folder) if p.absolute() != out)
            if not files:
                raise StagewiseError(f"{job.folder} has no files")
            with ResultsFile(out) as results:
                session = self._ensure_engine(job.settings, job.cancel)
                assert self._loaded is not None
                # a folder's images would push the window's own out of the disk cache
                session.use_prefix_cache(None)
                self._cache_mib = None  # the next question gives the cache back
                search = session.settled(job.settings.search_settings(
                    job.settings.search.seed, beam=1))  # beam "auto": a single pass
                session.verifier(search)
                load = session.plan
                model = str(load.model) if load is not None else self._loaded.name
                key = settings_key(model, search,
                                   mmproj=str(load.mmproj) if load is not None else "",
                                   image_tokens=job.settings.engine.image_tokens)
                batch = BatchJob(files, job.questions, _run_settings(job.settings, search),
                                 self._loaded.name, key)
                self.folder_started.emit(job, batch.total)
                summary = run_batch(session, batch, results, recorder=self._recorder,
                                    cancel=job.cancel, on_progress=self.folder_progress.emit,
                                    on_row=self.folder_row.emit)
            self.folder_finished.emit(summary)
        except Cancelled:
            self.folder_failed.emit("stopped before the first image")
        except (StagewiseError, OSError, MemoryError) as error:
            self.folder_failed.emit(str(error))
        finally:
            self.idle.emit(job.cancel)

    @Slot(object)
    def compare(self, job: CompareJob) -> None:
        """Answer one question with two configurations; ends with ``compared`` or
        ``compare_failed``. Both runs are kept in the history as a pair."""
        from stagewise.models.compare import parse_configuration, run_comparison, same_model
        from stagewise.models.session import Session, plan

        extra: Session | None = None
        records: list[RecordedRun] = []
        try:
            base = job.settings.search_settings()
            first, second = (parse_configuration(text, base) for text in job.configurations)
            images = _images(job.image_data, job.image_name, job.more_images)
            session = self._ensure_engine(job.settings, job.cancel)
            sessions = [session, session]
            for side, config in enumerate((first, second)):
                if config.model is None:
                    continue
                if session.plan is None:
                    raise StagewiseError("a model= key cannot be used with a server: it "
                                         "answers with its own model")
                if side == 1 and same_model(first, second) and extra is not None:
                    sessions[1] = extra
                    continue
                self.compare_progress.emit(side, f"loading {config.model.name}…")
                load = plan(config.model, config.mmproj, job.settings.engine_settings(),
                            config.search, hardware=self._hardware)
                extra = Session(load, lambda _done: not job.cancel.is_set())
                sessions[side] = extra
            for each in sessions:
                each.check_images(len(images))

            def on_event(side: int, event: Event) -> None:
                if side == len(records):
                    model = sessions[side].served_by if sessions[side].plan is None else \
                        sessions[side].plan.model.name
                    search = (first, second)[side].search
                    records.append(self._recorder.start(
                        images[0], job.image_data, job.image_name, job.question, model,
                        _run_settings(job.settings, search),
                        more_images=[(image, data, name) for image, (data, name)
                                     in zip(images[1:], job.more_images, strict=True)]))
                    self.compare_progress.emit(side, "answering…")
                records[side].add(event)

            comparison = run_comparison(sessions, _asked(images), job.question,
                                        (first, second), job.cancel, on_event)
            if len(records) == 2:
                self._recorder.link_comparison(*records)
            self.compared.emit(comparison, tuple(r.run_id for r in records))
        except Cancelled:
            for record in records:
                record.fail("stopped")
            self.compare_failed.emit("stopped")
        except (StagewiseError, OSError, MemoryError) as error:
            for record in records:
                record.fail(str(error))
            self.compare_failed.emit(str(error))
        finally:
            if extra is not None:
                extra.close()
            self.idle.emit(job.cancel)

    @Slot()
    def shut_down(self) -> None:
        """Free the engine and close the history (runs in the engine thread)."""
        if self._session is not None:
            self._session.close()
            self._session = None
        self._recorder.close()

    # -- internals ------------------------------------------------------------------------

    def _search(self, job: AskJob) -> SearchSettings:
        """The search this job runs: with beam "auto", of the width auto chooses now."""
        beam = None
        if job.settings.auto_beam:
            choice = self._auto.choice()
            beam = choice.beam
            self.beam_chosen.emit(choice.reason)
        return job.settings.search_settings(job.seed, beam)

    def _run(self, session: Session, job: AskJob, image: Images,
             search: SearchSettings, record: RecordedRun) -> None:
        batch: list[Event] = []
        last_flush = time.perf_counter()
        result: SearchResult | None = None
        for event in session.ask(image, job.question, search,
                                 job.cancel, earlier=[Turn(*t) for t in job.earlier]):
            batch.append(event)
            record.add(event)
            now = time.perf_counter()
            if not isinstance(event, TokenStreamed) or now - last_flush >= FLUSH_S:
                self.events.emit(batch)
                batch, last_flush = [], now
            if isinstance(event, AnswerFinished):
                result = event.result
        if batch:
            self.events.emit(batch)
        self.run_finished.emit(result)
        if job.settings.auto_beam and result is not None:
            self.beam_chosen.emit(self._auto.observe(result, session.engine).reason)

    def _ensure_engine(self, settings: AppSettings, cancel: threading.Event) -> Session:
        """The session for these settings: planned as every front end plans a load
        (:func:`stagewise.models.session.plan`), loaded unless the same load is in place."""
        from stagewise.models.hardware import detect_hardware
        from stagewise.models.inference.llama_runtime import supports_gpu_offload
        from stagewise.models.session import Session, plan

        try:
            server = settings.server_settings()
        except StagewiseError as error:  # an address the settings cannot use
            self.model_failed.emit(str(error))
            raise
        if server is not None:
            return self._ensure_server(server)
        if self._hardware is None:
            self._hardware = detect_hardware()
        try:
            load = plan(settings.model, settings.mmproj, settings.engine_settings(),
                        settings.search_settings(), hardware=self._hardware)
        except StagewiseError as error:
            self.model_failed.emit(str(error))
            raise
        current = self._session.plan if self._session is not None else None
        if current is not None and current.key == load.key:
            self._use_prefix_cache(settings)
            return self._session
        for warning in load.fit.warnings:
            log.warning("%s: %s", load.model.name, warning)
        if self._session is not None:
            self._session.close()
            self._session = self._loaded = None
        self.model_loading.emit(load.model.name)
        start = time.perf_counter()

        def progress(value: float) -> bool:
            self.model_progress.emit(value)
            return not cancel.is_set()

        try:
            self._session = Session(load, progress=progress)
            self._server = None
            self._auto = AutoBeam()
            self._cache_mib = None
            self._use_prefix_cache(settings)
        except Cancelled:
            self.model_failed.emit("loading the model was stopped")
            raise
        except StagewiseError as error:
            self.model_failed.emit(str(error))
            raise
        self._loaded = LoadedModel(load.model.name, load.model, load.mmproj, load.note,
                                   supports_gpu_offload() and load.engine.gpu_layers != 0,
                                   time.perf_counter() - start)
        self.model_loaded.emit(self._loaded)
        return self._session

    def _use_prefix_cache(self, settings: AppSettings) -> None:
        """Give the session the cache of encoded images the settings ask for."""
        from stagewise.models.inference.prefix_cache import PrefixCache

        if self._session is None or self._cache_mib == settings.prefix_cache_mib:
            return
        self._session.use_prefix_cache(PrefixCache.with_cap_mib(settings.prefix_cache_mib))
        self._cache_mib = settings.prefix_cache_mib

    def _ensure_server(self, server: ServerSettings) -> Session:
        """The session on ``server``, connected unless it is the one in place."""
        from stagewise.models.remote.keys import with_secrets
        from stagewise.models.session import Session

        try:
            server, key = with_secrets(server)
        except StagewiseError as error:
            self.model_failed.emit(str(error))
            raise
        if self._session is not None and self._server == (server, key):
            return self._session
        if self._session is not None:
            self._session.close()
            self._session = self._loaded = None
        self.model_loading.emit(server.describe())
        start = time.perf_counter()
        try:
            self._session = Session.connect(server, key)
            self._auto = AutoBeam()
        except StagewiseError as error:
            self.model_failed.emit(str(error))
            raise
        self._server = (server, key)
        self._loaded = LoadedModel(server.describe(), None, None, "", False,
                                   time.perf_counter() - start, server=server.url)
        self.model_loaded.emit(self._loaded)
        return self._session

    def _fail(self, record: RecordedRun, message: str, cancelled: bool = False) -> None:
        record.fail(message)
        self.run_failed.emit(message, cancelled)

    def _history_notice(self, message: str) -> None:
        """A run the history could not keep, or not in full: the window says so."""
        self.notice.emit(message[:1].upper() + message[1:])


def _run_settings(settings: AppSettings, search: SearchSettings) -> RunSettings:
    """What a run is asked with, as the history keeps it: the window's settings with the
    search it really ran (its seed, and with beam "auto" the width auto chose)."""
    return RunSettings(search, settings.engine, settings.server, settings.model,
                       settings.mmproj, auto_beam=settings.auto_beam)


class EngineHost(QObject):
    """The GUI thread's handle on the engine thread."""

    _load = Signal(object, object)
    _ask = Signal(object)
    _prepare = Signal(object)
    _ask_folder = Signal(object)
    _compare = Signal(object)

    def __init__(self, history_folder: Path | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.thread = QThread()
        self.thread.setObjectName("stagewise-engine")
        self.worker = EngineWorker(history_folder)
        self.worker.moveToThread(self.thread)
        self._load.connect(self.worker.load)
        self._ask.connect(self.worker.ask)
        self._prepare.connect(self.worker.prepare)
        self._ask_folder.connect(self.worker.ask_folder)
        self._compare.connect(self.worker.compare)
        # finished is emitted by the engine thread itself as its loop ends: the engine is
        # freed there, after the last job, whatever was still queued
        self.thread.finished.connect(self.worker.shut_down, Qt.ConnectionType.DirectConnection)
        self._cancels: list[threading.Event] = []
        self._preparing: PrepareJob | None = None  # the last image sent to be prepared
        self.worker.idle.connect(self._forget_finished)
        register_thread(self.thread)
        start_in_background(self.thread)  # the window gets the GIL back within 0.5 ms

    def load(self, settings: AppSettings) -> threading.Event:
        """Queue a model load; set the returned event to stop it."""
        cancel = threading.Event()
        self._cancels.append(cancel)
        self._load.emit(settings, cancel)
        return cancel

    def ask(self, job: AskJob) -> None:
        """Queue a question; :meth:`stop` or ``job.cancel`` stops it. A preparation of
        another image is cancelled; one of this image goes on, and the question then
        uses what it made."""
        if self._preparing is not None and self._preparing.image_data != job.image_data:
            self.cancel_preparing()
        self._cancels.append(job.cancel)
        self._ask.emit(job)

    def ask_folder(self, job: FolderJob) -> None:
        """Queue a folder's questions; :meth:`stop` or ``job.cancel`` stops them between
        two decode steps, every row written before kept."""
        self.cancel_preparing()
        self._cancels.append(job.cancel)
        self._ask_folder.emit(job)

    def compare(self, job: CompareJob) -> None:
        """Queue a comparison; :meth:`stop` or ``job.cancel`` stops it."""
        self.cancel_preparing()
        self._cancels.append(job.cancel)
        self._compare.emit(job)

    def prepare(self, image_data: bytes, image_name: str, settings: AppSettings,
                more_images: tuple[tuple[bytes, str], ...] = ()) -> PrepareJob:
        """Queue making an image (or several) ready for its questions, cancelling the
        preparation of the image before it (the worker answers with ``image_ready``)."""
        self.cancel_preparing()
        job = PrepareJob(image_data, image_name, settings, more_images=more_images)
        self._preparing = job
        self._cancels.append(job.cancel)
        self._prepare.emit(job)
        return job

    def cancel_preparing(self) -> None:
        """Stop the preparation of the last image, if it is still queued or running (an
        encode stops within a few graph nodes)."""
        if self._preparing is not None:
            self._preparing.cancel.set()
            self._preparing = None

    def stop(self) -> None:
        """Stop every queued or running job; the engine sees it within one decode step."""
        for cancel in self._cancels:
            cancel.set()

    def shut_down(self, timeout_ms: int = 5000) -> bool:
        """Stop, free the engine and end the thread; True if it ended within the bound.

        A thread still running after the bound (an image encode cannot be interrupted) is
        kept referenced, so Qt never destroys it while it runs; the caller should then end
        the process with :func:`os._exit` once its own files are closed.
        """
        if not self.thread.isRunning():
            return True
        self.stop()
        self.thread.quit()
        ended = self.thread.wait(timeout_ms)
        if not ended:
            log.warning("the engine thread did not stop within %d ms", timeout_ms)
            keep_alive(self.thread, self.worker)
        return ended

    @Slot(object)
    def _forget_finished(self, cancel: threading.Event) -> None:
        if cancel in self._cancels:
            self._cancels.remove(cancel)
