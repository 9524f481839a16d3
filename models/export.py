"""Export saved runs as Markdown, a standalone HTML page or JSON.

Each run shows its question, image, model, date and status, the four stages (the conclusion
first and prominent), and the search: per segment every candidate (chosen or not, why it
stopped, its tokens and mean log-probability), the correctness checks and the judge's
verdicts. Qt-free.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from models.errors import StagewiseError
from models.events import Candidate, Check, SearchResult, Verdict
from models.files import write_atomic
from models.history import MIME_TYPES, StoredRun, describe_error
from models.stages import Stage

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "ExportFormat", "export", "to_html", "to_json",
           "to_markdown"]

ExportFormat = Literal["markdown", "html", "json"]
EXPORT_FORMAT = "stagewise-export"
EXPORT_VERSION = 1

_SUFFIXES: dict[str, ExportFormat] = {
    ".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html",
    ".json": "json",
}

_STRATEGIES = {
    "stage": "stage-level beam search",
    "sentence": "sentence-level beam search",
    "best-of-n": "best-of-N",
    "retrace": "stage-wise retracing search (SWIRES)",
}

_BODY_STAGES = (Stage.SUMMARY, Stage.CAPTION, Stage.REASONING)


# --------------------------------------------------------------------------------------------
# What both text formats show


@dataclass
class _Segment:
    """One segment of the search: its candidates, checks, verdicts and winner."""

    no: int
    unit: Stage | None
    title: str = ""
    candidates: list[Candidate] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    chosen: int | None = None


def _segments(result: SearchResult) -> list[_Segment]:
    """The result's segments in order, titled (``"Reasoning, part 2"`` when a stage has many)."""
    segments: dict[int, _Segment] = {}
    for c in result.candidates:
        segments.setdefault(c.segment, _Segment(c.segment, c.unit)).candidates.append(c)
    for check in result.checks:
        if check.segment in segments:
            segments[check.segment].checks.append(check)
    for v in result.verdicts:
        segments.setdefault(v.segment, _Segment(v.segment, v.unit)).verdicts.append(v)
    for no, index in result.chosen:
        if no in segments:
            segments[no].chosen = index
    ordered = [segments[no] for no in sorted(segments)]
    counts: dict[Stage | None, int] = {}
    for seg in ordered:
        counts[seg.unit] = counts.get(seg.unit, 0) + 1
    seen: dict[Stage | None, int] = {}
    for seg in ordered:
        seen[seg.unit] = seen.get(seg.unit, 0) + 1
        name = seg.unit.title if seg.unit is not None else "Whole answer"
        seg.title = name if counts[seg.unit] == 1 else f"{name}, part {seen[seg.unit]}"
        seg.candidates.sort(key=lambda c: c.index)
    return ordered


def _number(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "n/a"


def _candidate_facts(c: Candidate, chosen: bool) -> str:
    facts = ["chosen"] if chosen else []
    facts += [f"finish: {c.finish}", f"{c.n_tokens} tokens",
              f"mean log-prob {_number(c.mean_logprob)}"]
    return " · ".join(facts)


def _search_line(result: SearchResult) -> str:
    strategy = _STRATEGIES.get(result.strategy, result.strategy or "unknown search")
    parts = [strategy, f"beam {result.beam}"]
    if result.select:
        parts.append(f"{result.select} selection")
    parts.append(f"seed {result.seed}")
    if result.mode:
        parts.append(f"{result.mode} stages")
    return ", ".join(parts)


def _selection_note(seg: _Segment, result: SearchResult) -> str:
    if len(seg.candidates) <= 1:
        return "A single candidate."
    if seg.verdicts:
        return "Chosen by the judge's knockout tournament."
    if result.select == "logprob":
        return "Chosen by the highest mean log-probability."
    return "No choice was made (the run stopped first)." if seg.chosen is None else ""


def _check_line(check: Check) -> str:
    verdict = "passed" if check.correct else "failed"
    return f"Candidate {check.candidate + 1} {verdict} the correctness check."


def _verdict_parts(v: Verdict) -> tuple[str, str, str]:
    """(round and pair, winner, reason) of a verdict, for people (candidates from 1)."""
    pair = f"Round {v.round + 1}: candidate {v.first + 1} vs {v.second + 1}"
    winner = f"candidate {v.winner + 1}" + (" (forced)" if v.forced else "")
    return pair, winner, v.reason or "—"


def _date(run: StoredRun) -> str:
    return run.entry.created.strftime("%Y-%m-%d %H:%M UTC")


def _status(run: StoredRun) -> str:
    return f"{run.entry.status}: {run.error}" if run.error else run.entry.status


def _image_data(run: StoredRun) -> bytes | None:
    try:
        return run.image_path.read_bytes()
    except OSError:
        return None


def _mime(path: Path) -> str:
    return MIME_TYPES.get(path.suffix.lstrip(".").lower(), "application/octet-stream")


# --------------------------------------------------------------------------------------------
# Markdown


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~!&])")
_MD_LINE_START = re.compile(r"^([ \t]*)([-+=]|\d+[.)])", re.MULTILINE)


def _md(text: str, strong: bool = False) -> str:
    """Text escaped for Markdown; lines kept (hard breaks), blank lines keep paragraphs.

    Args:
        text: Plain text.
        strong: Make every line bold.

    Returns:
        Markdown that shows ``text`` as it is.
    """
    text = _MD_SPECIAL.sub(r"\\\1", text.strip())
    text = _MD_LINE_START.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1],
                              text)
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines):
        content = line.strip()
        if content and strong:
            line = f"**{content}**"
        if content and i + 1 < len(lines) and lines[i + 1].strip():
            line += "\\"  # a hard line break
        out.append(line)
    return "\n".join(out)


def _md_inline(text: str) -> str:
    return _md(" ".join(text.split()))


def _md_code(text: str) -> str:
    """A fenced block holding ``text`` as is (the fence is longer than any backtick run)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def _md_quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.split("\n"))


def _md_image(run: StoredRun, image_folder: str | None) -> str:
    alt = _md_inline(run.image_name) or "image"
    if not run.image_path.is_file():
        return f"*(the image {alt} is no longer stored)*"
    if image_folder is None:
        target = run.image_path.resolve().as_uri()
    else:
        target = f"{quote(image_folder)}/{quote(run.image_path.name)}"
    return f"![{alt}]({target})"


def _md_run(run: StoredRun, image_folder: str | None) -> list[str]:
    result = run.result
    out = [f"## {_md_inline(run.entry.question) or '(no question)'}", "",
           _md_image(run, image_folder), "",
           f"- **Model:** {_md_inline(run.entry.model)}",
           f"- **Asked:** {_date(run)}",
           f"- **Status:** {_md_inline(_status(run))}",
           f"- **Image:** {_md_inline(run.image_name)}",
           f"- **Search:** {_md_inline(_search_line(result))}", "",
           "### Conclusion", ""]
    conclusion = result.stages.get(Stage.CONCLUSION, "")
    out += [_md_quote(_md(conclusion, strong=True) if conclusion.strip() else "*(none)*"), ""]
    for stage in _BODY_STAGES:
        text = result.stages.get(stage, "")
        out += [f"### {stage.title}", "", _md(text) if text.strip() else "*(none)*", ""]
    out += ["### Search", ""]
    segments = _segments(result)
    if not segments:
        out += ["*(no candidates were saved)*", ""]
    for seg in segments:
        out += _md_segment(seg, result)
    return out


def _md_segment(seg: _Segment, result: SearchResult) -> list[str]:
    out = [f"#### {seg.title}", ""]
    note = _selection_note(seg, result)
    if note:
        out += [note, ""]
    for c in seg.candidates:
        mark = "✔ " if c.index == seg.chosen else ""
        out += [f"- {mark}**Candidate {c.index + 1}** — "
                f"{_candidate_facts(c, c.index == seg.chosen)}", "",
                "  " + _md_code(c.text).replace("\n", "\n  "), ""]
    for check in seg.checks:
        out += [f"- {_check_line(check)}"]
    if seg.checks:
        out.append("")
    if seg.verdicts:
        out += ["| Judged | Winner | Reason |", "| --- | --- | --- |"]
        for v in seg.verdicts:
            pair, winner, reason = _verdict_parts(v)
            out.append(f"| {pair} | {winner} | {_md_inline(reason)} |")
        out.append("")
    return out


def to_markdown(runs: Sequence[StoredRun], image_folder: str | None = None) -> str:
    """The runs as one Markdown document.

    Args:
        runs: The runs, in the order to show them.
        image_folder: Link images as ``<image_folder>/<sha256>.<ext>`` (relative to the
            document; :func:`export` copies them there). None links the stored images by
            their absolute ``file:`` URI.

    Returns:
        The Markdown text.
    """
    out = ["# Stagewise export", ""]
    if not runs:
        out += ["*(no runs)*", ""]
    for i, run in enumerate(runs):
        if i:
            out += ["---", ""]
        out += _md_run(run, image_folder)
    return "\n".join(out).rstrip("\n") + "\n"


# --------------------------------------------------------------------------------------------
# HTML


_CSS = """
:root { color-scheme: light dark; --bg: #ffffff; --fg: #1d1f23; --muted: #5d636b;
  --card: #f4f6f8; --border: #d9dde3; --accent: #0b57d0; --chosen: #e3f2e6; --win: #1e7a35; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #15171a; --fg: #e6e8eb; --muted: #9aa1aa; --card: #1f2226;
    --border: #343a41; --accent: #8ab4f8; --chosen: #1d3324; --win: #7fd38f; }
}
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 60rem; padding: 1.5rem; background: var(--bg);
  color: var(--fg); font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
h1 { font-size: 1.4rem; margin: 0 0 1.5rem; color: var(--muted); }
article { border-top: 1px solid var(--border); padding: 1.5rem 0; }
h2.question { font-size: 1.35rem; margin: 0 0 1rem; }
.head { display: flex; gap: 1.25rem; flex-wrap: wrap; align-items: flex-start; }
.head img { max-width: min(100%, 22rem); max-height: 18rem; border-radius: 6px;
  border: 1px solid var(--border); }
dl { display: grid; grid-template-columns: auto 1fr; gap: 0.2rem 0.8rem; margin: 0; }
dt { color: var(--muted); } dd { margin: 0; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0.3rem 0 0; }
.conclusion { background: var(--card); border-left: 4px solid var(--accent);
  border-radius: 6px; padding: 0.8rem 1rem; margin: 1.2rem 0; }
.conclusion .text { font-size: 1.2rem; font-weight: 600; }
h3 { font-size: 1.05rem; margin: 1.2rem 0 0.2rem; }
h4 { font-size: 0.95rem; margin: 1rem 0 0.3rem; }
.none, .note { color: var(--muted); font-style: italic; }
details { background: var(--card); border: 1px solid var(--border); border-radius: 6px;
  padding: 0.4rem 0.8rem; margin: 0.4rem 0; }
summary { cursor: pointer; }
ol.candidates { padding-left: 1.4rem; }
ol.candidates li { margin: 0.5rem 0; padding: 0.3rem 0.5rem; border-radius: 4px; }
ol.candidates li.chosen { background: var(--chosen); }
.facts { color: var(--muted); font-size: 0.9rem; }
li.chosen .facts { color: var(--win); font-weight: 600; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0.2rem 0; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.4rem 0; font-size: 0.9rem; }
th, td { border: 1px solid var(--border); padding: 0.25rem 0.5rem; text-align: left;
  vertical-align: top; }
.error { color: #c5221f; }
"""

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _html_text(text: str, css: str = "text") -> str:
    if not text.strip():
        return '<p class="none">(none)</p>'
    return f'<p class="{css}">{_e(text.strip())}</p>'


def _html_image(run: StoredRun) -> str:
    data = _image_data(run)
    if data is None:
        return f'<p class="none">(the image {_e(run.image_name)} is no longer stored)</p>'
    uri = f"data:{_mime(run.image_path)};base64,{base64.b64encode(data).decode('ascii')}"
    return f'<img src="{uri}" alt="{_e(run.image_name)}">'


def _html_run(run: StoredRun) -> list[str]:
    result = run.result
    status = f'<span class="error">{_e(_status(run))}</span>' if run.error \
        else _e(run.entry.status)
    rows = [("Model", _e(run.entry.model)), ("Asked", _e(_date(run))), ("Status", status),
            ("Image", _e(run.image_name)), ("Search", _e(_search_line(result)))]
    out = ["<article>",
           f'<h2 class="question">{_e(run.entry.question) or "(no question)"}</h2>',
           '<div class="head">', _html_image(run), "<dl>"]
    out += [f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows]
    out += ["</dl>", "</div>",
            '<section class="conclusion"><h3>Conclusion</h3>',
            _html_text(result.stages.get(Stage.CONCLUSION, "")), "</section>"]
    for stage in _BODY_STAGES:
        out += [f"<section><h3>{stage.title}</h3>",
                _html_text(result.stages.get(stage, "")), "</section>"]
    out.append("<section><h3>Search</h3>")
    segments = _segments(result)
    if not segments:
        out.append('<p class="none">(no candidates were saved)</p>')
    for seg in segments:
        out += _html_segment(seg, result)
    out += ["</section>", "</article>"]
    return out


def _html_segment(seg: _Segment, result: SearchResult) -> list[str]:
    chosen = f", candidate {seg.chosen + 1} chosen" if seg.chosen is not None else ""
    out = [f"<h4>{_e(seg.title)}</h4>", "<details>",
           f"<summary>{len(seg.candidates)} candidate"
           f"{'s' if len(seg.candidates) != 1 else ''}{chosen}</summary>"]
    note = _selection_note(seg, result)
    if note:
        out.append(f'<p class="note">{_e(note)}</p>')
    out.append('<ol class="candidates">')
    for c in seg.candidates:
        won = c.index == seg.chosen
        css = ' class="chosen"' if won else ""
        out.append(f'<li value="{c.index + 1}"{css}>'
                   f'<div class="facts">{_e(_candidate_facts(c, won))}</div>'
                   f"<pre>{_e(c.text)}</pre></li>")
    out.append("</ol>")
    out += [f"<p>{_e(_check_line(check))}</p>" for check in seg.checks]
    if seg.verdicts:
        out.append("<table><tr><th>Judged</th><th>Winner</th><th>Reason</th></tr>")
        for v in seg.verdicts:
            cells = "".join(f"<td>{_e(part)}</td>" for part in _verdict_parts(v))
            out.append(f"<tr>{cells}</tr>")
        out.append("</table>")
    out.append("</details>")
    return out


def to_html(runs: Sequence[StoredRun]) -> str:
    """The runs as one standalone HTML page.

    Images are embedded as ``data:`` URIs, every text is escaped, colours follow the system's
    light or dark scheme; the page loads nothing and runs no script (its content security
    policy forbids both).

    Args:
        runs: The runs, in the order to show them.

    Returns:
        The HTML document.
    """
    title = runs[0].entry.question if len(runs) == 1 else f"{len(runs)} questions"
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<meta name="color-scheme" content="light dark">',
           f"<title>Stagewise — {_e(' '.join(title.split()))}</title>",
           f"<style>{_CSS}</style>", "</head>", "<body>", "<h1>Stagewise export</h1>"]
    if not runs:
        out.append('<p class="none">(no runs)</p>')
    for run in runs:
        out += _html_run(run)
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# JSON


def _finite(value: Any) -> Any:
    """``value`` with every infinite or NaN float replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
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
        "settings": run.settings,
        "result": run.result.to_json(),
    }


def to_json(runs: Sequence[StoredRun]) -> str:
    """The runs as JSON.

    The shape: ``{"format": "stagewise-export", "version": 1, "runs": [...]}``, each run with
    ``id``, ``created`` (ISO 8601), ``question``, ``model``, ``status``, ``error``, ``image``
    (``name``, ``sha256``, ``file``: the stored file's name), ``settings`` and ``result``
    (:meth:`SearchResult.to_json`). Infinite log-probabilities (no token) become null.

    Args:
        runs: The runs.

    Returns:
        The JSON text (strict JSON: no NaN or Infinity).
    """
    data = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION,
            "runs": [_json_run(run) for run in runs]}
    return json.dumps(_finite(data), ensure_ascii=False, indent=2, allow_nan=False) + "\n"


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
    """Copy each run's stored image into ``folder`` (once per image)."""
    for run in runs:
        target = folder / run.image_path.name
        if run.image_path.is_file() and not target.is_file():
            write_atomic(target, run.image_path.read_bytes())


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
