"""A compared pair of saved runs as one document: the two answers side by side, stage by
stage, the stage where they diverged marked, then each run in full (as
:mod:`stagewise.models.storage.export` shows one). Markdown, standalone HTML or JSON. Qt-free.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stagewise.models.disk.atomic import write_atomic
from stagewise.models.errors import StagewiseError
from stagewise.models.reasoning.compare import SIDES, Divergence, divergence
from stagewise.models.stages import STAGES
from stagewise.models.storage import export_view as view
from stagewise.models.storage.export import (
    EXPORT_FORMAT,
    ExportFormat,
    _copy_images,
    _format_of,
    _json_run,
    finite_json,
)
from stagewise.models.storage.export_html import _CSP, _CSS, _e, _html_run
from stagewise.models.storage.export_markdown import _md_inline, _md_run
from stagewise.models.storage.history import StoredRun, describe_error

__all__ = ["COMPARE_EXPORT_VERSION", "compare_html", "compare_json", "compare_markdown",
           "export_comparison"]

COMPARE_EXPORT_VERSION = 1
MARK = "◆"
"""Marks the stage where the two answers first differ."""

_PAIR_CSS = """
table.pair { width: 100%; table-layout: fixed; font-size: 0.95rem; }
table.pair td { white-space: pre-wrap; overflow-wrap: anywhere; }
table.pair tr.diverged th, table.pair tr.diverged td { border-left: 4px solid var(--accent); }
.mark { color: var(--accent); font-weight: 600; }
"""


def _where(first: StoredRun, second: StoredRun) -> Divergence:
    return divergence(first.result, second.result)


def compare_json(first: StoredRun, second: StoredRun) -> str:
    """The pair as JSON: ``{"format": "stagewise-export", "version": 1, "comparison": 1,
    "runs": [A, B], "divergence": {...}}``, each run as the JSON export writes one."""
    data: dict[str, Any] = {"format": EXPORT_FORMAT, "version": 1,
                            "comparison": COMPARE_EXPORT_VERSION,
                            "runs": [_json_run(first), _json_run(second)],
                            "divergence": _where(first, second).to_json()}
    return json.dumps(finite_json(data), ensure_ascii=False, indent=2, allow_nan=False) + "\n"


def compare_markdown(first: StoredRun, second: StoredRun,
                     image_folder: str | None = None) -> str:
    """The pair as one Markdown document (a table of the stages, then each run)."""
    where = _where(first, second)
    out = [f"# Stagewise comparison: {_md_inline(first.entry.question)}", "",
           f"| Stage | A: {_md_inline(view.search_line(first.result))} "
           f"| B: {_md_inline(view.search_line(second.result))} |", "|---|---|---|"]
    for stage in STAGES:
        mark = f" {MARK}" if stage is where.stage else ""
        cells = [_md_inline(run.result.stages.get(stage, "")).replace("|", "\\|") or "—"
                 for run in (first, second)]
        out.append(f"| **{stage.title}**{mark} | {cells[0]} | {cells[1]} |")
    out += ["", f"{MARK} " + where.describe() if not where.same else where.describe(), ""]
    for side, run in zip(SIDES, (first, second), strict=True):
        lines = _md_run(run, image_folder)
        lines[0] = f"## {side}: {_md_inline(view.search_line(run.result))}"
        out += ["---", "", *lines]
    return "\n".join(out).rstrip() + "\n"


def compare_html(first: StoredRun, second: StoredRun) -> str:
    """The pair as one standalone HTML page (it loads nothing and runs no script)."""
    where = _where(first, second)
    title = " ".join(first.entry.question.split())
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<meta name="color-scheme" content="light dark">',
           f"<title>Stagewise comparison — {_e(title)}</title>",
           f"<style>{_CSS}{_PAIR_CSS}</style>", "</head>", "<body>",
           f"<h1>Stagewise comparison: {_e(title)}</h1>",
           '<table class="pair"><tr><th>Stage</th>'
           f"<th>A: {_e(view.search_line(first.result))}</th>"
           f"<th>B: {_e(view.search_line(second.result))}</th></tr>"]
    for stage in STAGES:
        diverged = stage is where.stage
        css = ' class="diverged"' if diverged else ""
        mark = f' <span class="mark">{MARK} diverged here</span>' if diverged else ""
        cells = "".join(f"<td>{_e(run.result.stages.get(stage, '').strip()) or '—'}</td>"
                        for run in (first, second))
        out.append(f"<tr{css}><th>{stage.title}{mark}</th>{cells}</tr>")
    out += ["</table>", f'<p class="note">{_e(where.describe())}</p>']
    for side, run in zip(SIDES, (first, second), strict=True):
        out.append(f"<h2>{side}</h2>")
        out += _html_run(run)
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def export_comparison(first: StoredRun, second: StoredRun, path: Path,
                      fmt: ExportFormat | None = None) -> Path:
    """Write a compared pair to one file, atomically; the format from the extension
    (``.md``, ``.html``, ``.json``) unless ``fmt`` says. A Markdown export copies the images
    into ``<stem>-images/`` beside it.

    Raises:
        StagewiseError: The format is unknown, or the file could not be written.
    """
    path = Path(path)
    fmt = fmt or _format_of(path)
    try:
        if fmt == "markdown":
            folder = f"{path.stem}-images"
            _copy_images([first, second], path.parent / folder)
            text = compare_markdown(first, second, image_folder=folder)
        elif fmt == "html":
            text = compare_html(first, second)
        elif fmt == "json":
            text = compare_json(first, second)
        else:
            raise StagewiseError(f"unknown export format {fmt!r}; use markdown, html or json")
        write_atomic(path, text.encode("utf-8"))
    except OSError as error:
        raise StagewiseError(f"could not export to {path}: {describe_error(error)}") from error
    return path
