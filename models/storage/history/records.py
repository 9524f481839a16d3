"""What the history hands out: list rows, stored runs, and the error for a missing run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args

from stagewise.models.errors import StagewiseError
from stagewise.models.events import SearchResult

__all__ = ["RUN_RECORD_STATUSES", "HistoryEntry", "RunNotFound", "RunRecordStatus", "StoredRun"]

RunRecordStatus = Literal["running", "finished", "cancelled", "failed", "interrupted"]
RUN_RECORD_STATUSES: tuple[RunRecordStatus, ...] = get_args(RunRecordStatus)


@dataclass(frozen=True)
class HistoryEntry:
    """One row of the history list.

    Attributes:
        id: The run's id.
        created: When the question was asked (timezone-aware, UTC).
        question: The question.
        model: The model's display name.
        status: Where the run stands or how it ended.
        conclusion: The chosen conclusion so far (``""`` if none yet).
        thumbnail: The thumbnail file, or None if it is missing.
        beam: The beam width it ran with (None before its search started).
        strategy: The search strategy (None before its search started).
        thread: The id of the first run of its thread (the questions asked about the same
            open image, one after another); None when it is the first, or its own.
        follow_up: It was asked with the thread's earlier questions and answers in context
            (a plain question asked again about the image is in the thread, but not this).
        compared_with: The other run of a comparison (the same question answered by
            another configuration), or None.
    """

    id: int
    created: datetime
    question: str
    model: str
    status: RunRecordStatus
    conclusion: str
    thumbnail: Path | None
    beam: int | None = None
    strategy: str | None = None
    thread: int | None = None
    follow_up: bool = False
    compared_with: int | None = None

    @property
    def thread_id(self) -> int:
        """Its thread: the id of the thread's first run (its own id if it started one)."""
        return self.thread if self.thread is not None else self.id


@dataclass(frozen=True)
class StoredRun:
    """One run read back from the history.

    Attributes:
        entry: Its list row.
        image_path: The stored copy of the original image bytes.
        image_name: The original file name, or a label such as ``"<clipboard>"``.
        settings: The JSON-able settings given to :meth:`History.start`.
        error: The failure message of a failed run, ``""`` otherwise.
        result: The search result rebuilt from the saved rows (partial for a run that did not
            finish; its ``status`` is ``"cancelled"`` for failed, interrupted and running runs,
            whose true status is in ``entry.status``). Candidates have no ``tokens``.
        more_images: A question about several images: the stored copies of the images
            after the first and their names, in order (empty for one image).
    """

    entry: HistoryEntry
    image_path: Path
    image_name: str
    settings: dict[str, Any]
    error: str
    result: SearchResult
    more_images: tuple[tuple[Path, str], ...] = ()

    @property
    def images(self) -> tuple[tuple[Path, str], ...]:
        """Every image the question was about, first to last: (stored copy, name)."""
        return ((self.image_path, self.image_name), *self.more_images)

    @property
    def sha256(self) -> str:
        """The SHA-256 of the original image bytes."""
        return self.image_path.name.split(".", 1)[0]


class RunNotFound(StagewiseError, KeyError):
    """The run is not (or no longer) in the history."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id} is not in the history (it may have been deleted)")

    def __str__(self) -> str:
        return str(self.args[0])
