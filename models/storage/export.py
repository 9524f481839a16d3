"""Export saved runs as Markdown, a standalone HTML page or JSON.

Each run shows its question, image, model, date and status, the four stages (the conclusion
first and prominent), and the search: per segment every candidate (chosen or not, why it
stopped, its tokens and mean log-probability), the correctness checks and the judge's
verdicts. Qt-free.

:func:`export` writes any of the three; the Markdown and the HTML are made by
:mod:`stagewise.models.storage.export_markdown` and :mod:`stagewise.models.storage.export_html`, the
JSON here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from stagewise.models.disk.atomic import write_atomic
from stagewise.models.errors import StagewiseError
from stagewise.models.events import SearchResult
from stagewise.models.reasoning.confidence import confidence_of
from stagewise.models.reasoning.run_view import cautions_of
from stagewise.models.storage.export_html import to_html
from stagewise.models.storage.export_markdown import to_markdown
from stagewise.models.storage.history import StoredRun, describe_error

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "ExportFormat", "confidence_json", "export",
           "finite_json", "to_json"]

ExportFormat = Literal["markdown", "html", "json"]
EXPORT_FORMAT = "stagewise-export"
EXPORT_VERSION = 1

_SUFFIXES: dict[str, ExportFormat] = {
    ".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html",
    ".json": "json",
}


# --------------------------------------------------------------------------------------------
# JSON


def finite_json(value: Any) -> Any:
    """``value`` with every infinite or NaN float replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def _json_run(run: StoredRun) -> dict[str, Any]:
    return {
        "id": run.entry.id,
        "created": run.entry.created.isoformat(),
        "question": run.entry.question,
        "model": run.entry.model,
        "status": run.entry.status,
        "error": run.error,
        "image": {"name": run.image_name, "sha256": run.sha256, "file": run.image_path.name},
        "images": [{"name": name, "sha256": path.name.split(".", 1)[0], "file": path.name}
                   for path, name in run.images],
        "settings": run.settings,
        "result": run.result.to_json(),
        "confidence": confidence_json(run.result),
        "cautions": cautions_of(run.result),
    }


def confidence_json(result: SearchResult) -> dict[str, Any] | None:
    """The ``confidence`` object of a run (``ask --json``, the JSON export): agreement,
    margin, label and the rest of :meth:`~stagewise.models.reasoning.confidence.Confidence.
    to_json`; None when the run has no conclusion to be sure of."""
    found = confidence_of(result)
    return found.to_json() if found is not None else None


def to_json(runs: Sequence[StoredRun]) -> str:
    """The runs as JSON.

    The shape: ``{"format": "stagewise-export", "version": 1, "runs": [...]}``, each run with
    ``id``, ``created`` (ISO 8601), ``question``, ``model``, ``status``, ``error``, ``image``
    (``name``, ``sha256``, ``file``: the stored file's name; the first image), ``images``
    (every image of the question, the same way, in order), ``settings``, ``result``
    (:meth:`SearchResult.to_json`), ``confidence`` (:func:`confidence_json`) and ``cautions``
    (the warnings and doubts the window shows under the answer). Infinite log-probabilities
    (no token) become null.

    Args:
        runs: The runs.

    Returns:
        The JSON text (strict JSON: no NaN or Infinity).
    """
    data = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION,
            "runs": [_json_run(run) for run in runs]}
    return json.dumps(finite_json(data), ensure_ascii=False, indent=2, allow_nan=False) + "\n"


# --------------------------------------------------------------------------------------------
# Files


def _format_of(path: Path) -> ExportFormat:
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise StagewiseError(
            f"{path.name}: cannot tell the export format from the extension "
            f"{path.suffix or '(none)'}; use .md, .html or .json")
    return fmt


def _copy_images(runs: Sequence[StoredRun], folder: Path) -> None:
    """Copy each run's stored images into ``folder`` (once per image)."""
    for run in runs:
        for path, _name in run.images:
            target = folder / path.name
            if path.is_file() and not target.is_file():
                write_atomic(target, path.read_bytes())


def export(runs: Sequence[StoredRun], path: Path,
           fmt: ExportFormat | None = None) -> Path:
    """Write the runs to a file, atomically (a temporary file in the same folder, renamed).

    A Markdown export also copies the images into ``<stem>-images/`` beside the file and
    links them relatively.

    Args:
        runs: The runs, in the order to show them.
        path: The file to write.
        fmt: ``"markdown"``, ``"html"`` or ``"json"``; None takes it from the extension
            (``.md``/``.markdown``, ``.html``/``.htm``, ``.json``).

    Returns:
        The file written.

    Raises:
        StagewiseError: The format is unknown, or the file could not be written.
    """
    path = Path(path)
    if fmt is None:
        fmt = _format_of(path)
    if fmt not in ("markdown", "html", "json"):
        raise StagewiseError(f"unknown export format {fmt!r}; use markdown, html or json")
    try:
        if fmt == "markdown":
            folder = f"{path.stem}-images"
            _copy_images(runs, path.parent / folder)
            text = to_markdown(runs, image_folder=folder)
        else:
            text = to_html(runs) if fmt == "html" else to_json(runs)
        write_atomic(path, text.encode("utf-8"))
    except OSError as error:
        raise StagewiseError(f"could not export to {path}: {describe_error(error)}") from error
    return path
