"""Saved runs as one standalone HTML page (:func:`to_html`). Qt-free."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from stagewise.models.events import SearchResult
from stagewise.models.stages import Stage
from stagewise.models.storage import export_view as view
from stagewise.models.storage.history import MIME_TYPES, StoredRun

__all__ = ["to_html"]


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


def _image_data(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _mime(path: Path) -> str:
    return MIME_TYPES.get(path.suffix.lstrip(".").lower(), "application/octet-stream")



def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _html_text(text: str, css: str = "text") -> str:
    if not text.strip():
        return '<p class="none">(none)</p>'
    return f'<p class="{css}">{_e(text.strip())}</p>'


def _html_image(run: StoredRun) -> str:
    """The run's image, or its several images one after another."""
    shown = []
    for path, name in run.images:
        data = _image_data(path)
        if data is None:
            shown.append(f'<p class="none">(the image {_e(name)} is no longer stored)</p>')
            continue
        uri = f"data:{_mime(path)};base64,{base64.b64encode(data).decode('ascii')}"
        shown.append(f'<img src="{uri}" alt="{_e(name)}">')
    return "".join(shown)


def _html_run(run: StoredRun) -> list[str]:
    result = run.result
    status = f'<span class="error">{_e(view.status_line(run))}</span>' if run.error \
        else _e(run.entry.status)
    rows = [("Model", _e(run.entry.model)), ("Asked", _e(view.asked_date(run))),
            ("Status", status),
            ("Images" if run.more_images else "Image",
             _e(", ".join(name for _, name in run.images))),
            ("Search", _e(view.search_line(result)))]
    out = ["<article>",
           f'<h2 class="question">{_e(run.entry.question) or "(no question)"}</h2>',
           '<div class="head">', _html_image(run), "<dl>"]
    out += [f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows]
    out += ["</dl>", "</div>",
            '<section class="conclusion"><h3>Conclusion</h3>',
            _html_text(result.stages.get(Stage.CONCLUSION, ""))]
    if sure := view.confidence_line(result):
        out.append(f'<p class="confidence"><strong>How sure:</strong> {_e(sure)}</p>')
    out += [f'<p class="warning">⚠ {_e(caution)}</p>' for caution in view.cautions(result)]
    out.append("</section>")
    for stage in view.BODY_STAGES:
        out += [f"<section><h3>{stage.title}</h3>",
                _html_text(result.stages.get(stage, "")), "</section>"]
    out.append("<section><h3>Search</h3>")
    segments = view.search_segments(result)
    if not segments:
        out.append('<p class="none">(no candidates were saved)</p>')
    for seg in segments:
        out += _html_segment(seg, result)
    out += ["</section>", "</article>"]
    return out


def _html_segment(seg: view.Segment, result: SearchResult) -> list[str]:
    chosen = f", candidate {seg.chosen + 1} chosen" if seg.chosen is not None else ""
    out = [f"<h4>{_e(seg.title)}</h4>", "<details>",
           f"<summary>{len(seg.candidates)} candidate"
           f"{'s' if len(seg.candidates) != 1 else ''}{chosen}</summary>"]
    note = view.selection_note(seg, result)
    if note:
        out.append(f'<p class="note">{_e(note)}</p>')
    out.append('<ol class="candidates">')
    for c in seg.candidates:
        won = c.index == seg.chosen
        css = ' class="chosen"' if won else ""
        facts = view.candidate_facts(c, won, result.select)
        out.append(f'<li value="{c.index + 1}"{css}>'
                   f'<div class="facts">{_e(facts)}</div>'
                   f"<pre>{_e(view.candidate_text(c))}</pre></li>")
    out.append("</ol>")
    out += [f"<p>{_e(view.check_line(check))}</p>" for check in seg.checks]
    if seg.verdicts:
        out.append("<table><tr><th>Judged</th><th>Winner</th><th>Reason</th></tr>")
        for v in seg.verdicts:
            cells = "".join(f"<td>{_e(part)}</td>" for part in view.verdict_parts(v))
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
