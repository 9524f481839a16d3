"""``stagewise ask`` keeps its answers in the history, as the window does.

The same store and the same calls as the window's engine thread, so a scripted user has a
record and the window shows it. A history that cannot be written costs one warning line,
not the answer. ``--no-history`` opts out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stagewise.models.errors import StagewiseError
from stagewise.models.events import Event, TokenStreamed
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.remote.server import ServerSettings
from stagewise.models.storage.app_settings import AppSettings

if TYPE_CHECKING:
    from stagewise.models.inference.images import PreparedImage
    from stagewise.models.storage.history import History

__all__ = ["AskRecord"]


class AskRecord:
    """One ask's run in the history; every method is a no-op once saving has failed."""

    def __init__(self, args: argparse.Namespace, image: PreparedImage, question: str,
                 model: str, folder: Path | None = None, *, thread: int | None = None,
                 follow_up: bool = False) -> None:
        """Start the run in the history (unless ``--no-history``).

        Args:
            args: ``ask``'s options.
            image: The image.
            question: The question.
            model: The model's name, as the history shows it.
            folder: The history folder; the user's if None.
            thread: The run this question follows about the same image (one ``ask`` with
                several questions is one thread), or None.
            follow_up: It is asked with the earlier questions and answers in context.
        """
        self._history: History | None = None
        self._run = -1
        if args.no_history:
            return
        from stagewise.models.storage.history import History

        try:
            self._history = History(folder)
            self._run = self._history.start(image, Path(args.image).read_bytes(),
                                            Path(args.image).name, question, model,
                                            settings_record(args), thread=thread,
                                            follow_up=follow_up)
        except (StagewiseError, OSError) as error:
            self._warn(error)

    @property
    def run_id(self) -> int:
        """The run's id in the history; -1 when it is not saved."""
        return self._run

    def record(self, event: Event) -> None:
        if self._run < 0 or self._history is None or isinstance(event, TokenStreamed):
            return
        try:
            self._history.record(self._run, event)
        except StagewiseError as error:
            self._warn(error)

    def fail(self, message: str) -> None:
        if self._run < 0 or self._history is None:
            return
        try:
            self._history.fail(self._run, message)
        except StagewiseError as error:
            self._warn(error)

    def _warn(self, error: Exception) -> None:
        print(f"stagewise: this answer will not be saved in the history: {error}",
              file=sys.stderr)
        self._run = -1


def settings_record(args: argparse.Namespace) -> dict[str, Any]:
    """The settings an ask ran with, as the window saves its own beside a run."""
    from stagewise.desktop.cli.ask import engine_settings, search_settings

    settings = AppSettings(
        model=args.model, mmproj=args.mmproj, search=search_settings(args),
        engine=engine_settings(args),
        server=ServerSettings(_address(args.server), args.server_kind, args.server_model,
                              StageMode(args.stage_mode)))
    return {k: v for k, v in settings.to_json().items() if not k.startswith("window_")}


def _address(server: str | None) -> str:
    """``--server`` as the history keeps it: without a login ("" for none)."""
    if not server:
        return ""
    from stagewise.models.remote.address import parse_address

    return parse_address(server).url
