"""Keeping a run in the history while it is answered: the one way the front ends record.

The window's engine thread and ``stagewise ask`` both record through a
:class:`HistoryRecorder`: :meth:`HistoryRecorder.start` saves the run (its image, question,
model and :class:`RunSettings`) and returns a :class:`RecordedRun`, which folds in the core's
events as they come (each saved event commits at once, so a crash or a kill loses nothing
already recorded) and ends the run: the search's own
:class:`~stagewise.models.events.AnswerFinished` saves its result, finished or cancelled with
what the candidates had written; :meth:`RecordedRun.fail` marks it failed, keeping what
arrived before.

A history that cannot be written (damaged, full, read-only, locked, a file where its folder
should be) costs one message through ``warn``, never the answer. After a failed write a run
saves no more progress (a locked database would otherwise hold up every event), but its end
(the result, or the failure) is still tried once, so a passing problem leaves a whole record.

Qt-free; use one recorder per thread, as :class:`~stagewise.models.storage.history.History`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from stagewise.models.errors import StagewiseError
from stagewise.models.events import AnswerFinished, Event, TokenStreamed
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.remote.server import ServerSettings
from stagewise.models.storage.app_settings import AppSettings
from stagewise.models.storage.history.store import History

if TYPE_CHECKING:
    from stagewise.models.inference.images import PreparedImage

__all__ = ["NOT_SAVED", "NOT_SAVED_IN_FULL", "HistoryRecorder", "RecordedRun", "RunSettings"]

NOT_SAVED = "this answer will not be saved in the history"
"""How a message about a run the history could not start begins."""

NOT_SAVED_IN_FULL = "this answer could not be saved in full in the history"
"""How a message about a run the history stopped saving midway begins."""


@dataclass(frozen=True)
class RunSettings:
    """What a run was asked with, as the history keeps it beside the run.

    Attributes:
        search: The search it ran: with beam "auto", of the width auto chose for it.
        engine: The load it asked for (before the plan fitted it to the machine).
        server: The server that answered; None, or one with an empty ``url``, for a model
            in this process (the window keeps a switched-off server's other values).
        model: The text model file asked for (None: the built-in model, or a server's).
        mmproj: The projector file asked for (None: the one beside the model).
        auto_beam: The search's width was beam "auto"'s choice, not a set one.
    """

    search: SearchSettings
    engine: EngineSettings = field(default_factory=EngineSettings)
    server: ServerSettings | None = None
    model: Path | None = None
    mmproj: Path | None = None
    auto_beam: bool = False

    def record(self) -> dict[str, Any]:
        """The settings as the history stores them: the settings file's own JSON form
        (:meth:`~stagewise.models.storage.app_settings.AppSettings.to_json`, its version
        included, so that :func:`~stagewise.models.storage.app_settings.settings_from_json`
        reads it back as a past run was asked), without the window's geometry and state.
        A server's login is never in it.
        """
        settings = AppSettings(model=self.model, mmproj=self.mmproj, search=self.search,
                               auto_beam=self.auto_beam, engine=self.engine,
                               server=self.server or ServerSettings(""))
        return {k: v for k, v in settings.to_json().items() if not k.startswith("window_")}


class RecordedRun:
    """One run being kept in the history; every call is a no-op for a run not saved."""

    def __init__(self, history: History | None = None, run_id: int = -1,
                 warn: Callable[[str], None] | None = None) -> None:
        """A run :meth:`HistoryRecorder.start` saved; ``RecordedRun()`` is one not saved.

        Args:
            history: The history holding it (None: not saved).
            run_id: Its id there.
            warn: Told, once, when a write fails.
        """
        self._history = history if run_id >= 0 else None
        self._run_id = run_id if history is not None else -1
        self._warn = warn or (lambda _message: None)
        self._broken = False  # a write failed: progress is no longer saved
        self._ended = False

    @property
    def run_id(self) -> int:
        """The run's id in the history; -1 when it is not saved."""
        return self._run_id

    @property
    def saved(self) -> bool:
        """Whether the history holds this run."""
        return self._run_id >= 0

    def add(self, event: Event) -> None:
        """Fold one of the search's events into the record (streamed tokens cost nothing).

        :class:`~stagewise.models.events.AnswerFinished` ends the run with its result.
        """
        if self._history is None or self._ended or isinstance(event, TokenStreamed):
            return
        finished = isinstance(event, AnswerFinished)
        if self._broken and not finished:
            return
        self._ended = finished
        history, run_id = self._history, self._run_id
        self._write(lambda: history.record(run_id, event))

    def fail(self, message: str) -> None:
        """Mark the run failed with ``message``; what it recorded before is kept."""
        if self._history is None or self._ended:
            return
        self._ended = True
        history, run_id = self._history, self._run_id
        self._write(lambda: history.fail(run_id, message))

    def _write(self, write: Callable[[], None]) -> None:
        try:
            write()
        except StagewiseError as error:
            if not self._broken:
                self._warn(f"{NOT_SAVED_IN_FULL}: {error}")
            self._broken = True


class HistoryRecorder:
    """Keeps the runs one front end answers in one history folder (use it in one thread).

    The history is opened at the first :meth:`start` (again at the next one if it could
    not be) and kept open until :meth:`close`.
    """

    def __init__(self, folder: Path | None = None, *, warn: Callable[[str], None],
                 save: bool = True) -> None:
        """Record nothing yet.

        Args:
            folder: The history folder; the user's if None.
            warn: Told when a run will not be saved, or not in full: a message for people,
                starting in lower case (``"this answer will not be saved in the history:
                disk full"``).
            save: False keeps nothing (``stagewise ask --no-history``): every run started
                is not saved, silently.
        """
        self._folder = folder
        self._warn = warn
        self._save = save
        self._history: History | None = None

    def start(self, image: PreparedImage, original: bytes | Path, image_name: str,
              question: str, model: str, settings: RunSettings, *, thread: int | None = None,
              follow_up: bool = False,
              more_images: Sequence[tuple[PreparedImage, bytes | Path, str]] = ()
              ) -> RecordedRun:
        """Save a new run, status ``"running"``; never raises for the history's sake.

        Args:
            image: The prepared image.
            original: The original image bytes, or the file they are read from.
            image_name: The original file name, or a label such as ``"<clipboard>"``.
            question: The question.
            model: Who answers, as the history shows it (the model's name, or the server).
            settings: What the run is asked with.
            thread: The run this question follows about the same image, or None.
            follow_up: It is asked with the thread's earlier questions and answers in context.
            more_images: A question about several images: the images after the first, each
                as (prepared image, original bytes or file, name).

        Returns:
            The run; one not saved (``run_id`` -1) when the history cannot take it, after
            ``warn`` has said why.
        """
        if not self._save:
            return RecordedRun()
        try:
            if self._history is None:
                self._history = History(self._folder)
            data = original.read_bytes() if isinstance(original, Path) else original
            more = [(each, raw.read_bytes() if isinstance(raw, Path) else raw, name)
                    for each, raw, name in more_images]
            run_id = self._history.start(image, data, image_name, question, model,
                                         settings.record(), thread=thread, follow_up=follow_up,
                                         more_images=more)
        except (StagewiseError, OSError, ValueError) as error:
            # ValueError: the file's bytes changed since the image was read from them
            self._warn(f"{NOT_SAVED}: {error}")
            return RecordedRun()
        return RecordedRun(self._history, run_id, self._warn)

    def link_comparison(self, first: RecordedRun, second: RecordedRun) -> None:
        """Keep two saved runs as a compared pair (nothing when either is not saved); a
        link that cannot be written costs one message through ``warn``."""
        if not (first.saved and second.saved) or self._history is None:
            return
        try:
            self._history.link_comparison(first.run_id, second.run_id)
        except StagewiseError as error:
            self._warn(f"the two answers could not be kept as a comparison: {error}")

    def close(self) -> None:
        """Close the history; safe to repeat. A later :meth:`start` opens it again."""
        if self._history is not None:
            self._history.close()
            self._history = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
