"""A batch's results file: one row per image and question, as CSV or JSON Lines.

Rows are appended and flushed one at a time, so a run stopped any way (Ctrl+C, Stop, a
kill, a crash) keeps every row written before. A second run reads the file first and
skips each image and question whose row is there with the same file content and the same
settings (:func:`row_key`); a last line cut short by a kill is dropped before appending.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, TextIO

from stagewise.models.errors import StagewiseError

__all__ = ["COLUMNS", "FORMATS", "BatchRow", "ResultsFile", "RowStatus", "read_rows",
           "row_key"]

RowStatus = Literal["finished", "bad file", "failed"]
"""A row's outcome: answered; the file is not an image that can be read (its ``error``
says why); or the answer failed (the model's error)."""

DONE: frozenset[str] = frozenset({"finished", "bad file"})
"""Statuses a second run does not redo: a failed answer is tried again."""

FORMATS = {".csv": "csv", ".jsonl": "jsonl"}
"""The results file's format, by its name's ending."""


@dataclass(frozen=True)
class BatchRow:
    """One image and one question.

    Attributes:
        path: The image file, as the folder lists it.
        question: The question.
        conclusion: The answer's Conclusion stage ("" unless finished).
        confidence: How sure the answer is ("": not measured by this version).
        seconds: The answer's time (0 for a bad file).
        status: See :data:`RowStatus`.
        error: Why a bad file or a failed answer has no conclusion ("" when finished).
        image_tokens: Tokens the image took in the prompt (0 when not asked).
        sha256: The file's content hash ("" when it could not be read).
        settings: What the answer depends on besides the image and question, as a short
            hash (:func:`~stagewise.models.batch.runner.settings_key`).
        run_id: The answer's run in the history (-1: not saved there).
    """

    path: str
    question: str
    conclusion: str = ""
    confidence: str = ""
    seconds: float = 0.0
    status: RowStatus = "finished"
    error: str = ""
    image_tokens: int = 0
    sha256: str = ""
    settings: str = ""
    run_id: int = -1

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What a second run compares (:func:`row_key`)."""
        return row_key(self.path, self.sha256, self.question, self.settings)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchRow:
        """A row as a file holds it (CSV gives every value as text).

        Raises:
            ValueError: A value is missing or of the wrong kind.
        """
        try:
            return cls(path=str(data["path"]), question=str(data["question"]),
                       conclusion=str(data.get("conclusion") or ""),
                       confidence=str(data.get("confidence") or ""),
                       seconds=float(data.get("seconds") or 0.0),
                       status=_status(data.get("status")),
                       error=str(data.get("error") or ""),
                       image_tokens=int(data.get("image_tokens") or 0),
                       sha256=str(data.get("sha256") or ""),
                       settings=str(data.get("settings") or ""),
                       run_id=int(data.get("run_id") if data.get("run_id") not in (None, "")
                                  else -1))
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a batch row: {error}") from None


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(BatchRow))
"""The results file's columns, in order."""


def row_key(path: str, sha256: str, question: str, settings: str) -> tuple[str, str, str, str]:
    """What makes two rows the same work: the image file and its content, the question and
    the settings."""
    return path, sha256, question, settings


def _status(value: object) -> RowStatus:
    if value in ("finished", "bad file", "failed"):
        return value  # type: ignore[return-value]
    raise ValueError(f"unknown status {value!r}")


class ResultsFile:
    """The results file of a batch: read once, then appended to row by row.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: Path) -> None:
        """Read what ``path`` already holds (nothing if it does not exist yet).

        Raises:
            StagewiseError: The name ends neither in .csv nor .jsonl, or the file exists
                and is not a results file this version wrote (it is then left as it is).
        """
        self.path = path
        suffix = path.suffix.lower()
        if suffix not in FORMATS:
            raise StagewiseError(f"{path}: the results file's name must end in .csv or "
                                 ".jsonl, not {path.suffix or 'nothing'}")
        self.format = FORMATS[suffix]
        self.rows: list[BatchRow] = []
        self._done: set[tuple[str, str, str, str]] = set()
        self._file: TextIO | None = None
        if path.exists():
            for row in self._read():
                self._remember(row)

    def done(self, key: tuple[str, str, str, str]) -> bool:
        """Whether a row with this key is in the file, finished or a bad file."""
        return key in self._done

    def append(self, row: BatchRow) -> None:
        """Add ``row`` at the end of the file, on the disk before this returns.

        Raises:
            StagewiseError: The file cannot be written.
        """
        text = self._encode(row)
        try:
            file = self._open()
            file.write(text)
            file.flush()
        except OSError as error:
            raise StagewiseError(f"{self.path}: cannot write the results "
                                 f"({error.strerror or error})") from None
        self._remember(row)

    def close(self) -> None:
        """Close the file; safe to repeat."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the file ---------------------------------------------------------------------

    def _remember(self, row: BatchRow) -> None:
        self.rows.append(row)
        if row.status in DONE:
            self._done.add(row.key)

    def _open(self) -> TextIO:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists() or self.path.stat().st_size == 0
            self._file = self.path.open("a", encoding="utf-8", newline="")
            if new and self.format == "csv":
                self._file.write(_csv_line(list(COLUMNS)))
        return self._file

    def _encode(self, row: BatchRow) -> str:
        values = asdict(row)
        if self.format == "jsonl":
            return json.dumps(values, ensure_ascii=False) + "\n"
        return _csv_line([values[c] for c in COLUMNS])

    def _read(self) -> list[BatchRow]:
        """The rows the file holds; a last line a kill cut short is cut off the file."""
        try:
            data = self.path.read_bytes()
        except OSError as error:
            raise StagewiseError(f"{self.path}: cannot be read "
                                 f"({error.strerror or error})") from None
        whole = data[: data.rfind(b"\n") + 1]
        if len(whole) != len(data):  # a row cut short: write the next one on a line of its own
            try:
                with self.path.open("r+b") as file:
                    file.truncate(len(whole))
            except OSError as error:
                raise StagewiseError(f"{self.path}: cannot be written "
                                     f"({error.strerror or error})") from None
        return _parse(self.path, self.format, whole)


def read_rows(path: Path) -> list[BatchRow]:
    """The whole rows a results file holds, the file left as it is (a window showing a
    batch's table reads it while the batch appends to it).

    Raises:
        StagewiseError: It cannot be read, or is not a results file.
    """
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise StagewiseError(f"{path}: not a .csv or .jsonl file")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise StagewiseError(f"{path}: cannot be read ({error.strerror or error})") from None
    return _parse(path, FORMATS[suffix], data[: data.rfind(b"\n") + 1])


def _parse(path: Path, form: str, whole: bytes) -> list[BatchRow]:
    """The rows of a results file's whole lines."""
    try:
        text = whole.decode("utf-8")
    except UnicodeDecodeError:
        raise _not_ours(path, "it is not UTF-8 text") from None
    try:
        if form == "jsonl":
            return [BatchRow.from_dict(json.loads(line))
                    for line in text.splitlines() if line.strip()]
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if text and tuple(reader.fieldnames or ()) != COLUMNS:
            raise _not_ours(path, f"its columns are not {', '.join(COLUMNS)}")
        return [BatchRow.from_dict(record) for record in reader]
    except (ValueError, csv.Error) as error:
        raise _not_ours(path, str(error)) from None


def _not_ours(path: Path, why: str) -> StagewiseError:
    return StagewiseError(f"{path} is not a batch's results file ({why}): choose another "
                          "file, or move this one away")


def _csv_line(values: list[object]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue()
