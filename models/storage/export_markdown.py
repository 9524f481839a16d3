"""Saved runs as one Markdown document (:func:`to_markdown`). Qt-free."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import quote

from stagewise.models.events import SearchResult
from stagewise.models.stages import Stage
from stagewise.models.storage import export_view as view
from stagewise.models.storage.history import StoredRun

__all__ = ["to_markdown"]


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
    """The run's image, or its several images side by side."""
    shown = []
    for path, name in run.images:
        alt = _md_inline(name) or "image"
        if not path.is_file():
            shown.append(f"*(the image {alt} is no longer stored)*")
            continue
        if image_folder is None:
            target = path.resolve().as_uri()
        else:
            target = f"{quote(image_folder)}/{quote(path.name)}"
        shown.append(f"![{alt}]({target})")
    return " ".join(shown)


def _md_run(run: StoredRun, image_folder: str | None) -> list[str]:
    result = run.result
    out = [f"## {_md_inline(run.entry.question) or '(no question)'}", "",
           _md_image(run, image_folder), "",
           f"- **Model:** {_md_inline(run.entry.model)}",
           f"- **Asked:** {view.asked_date(run)}",
           f"- **Status:** {_md_inline(view.status_line(run))}",
           f"- **Image{'s' if run.more_images else ''}:** "
           f"{', '.join(_md_inline(name) for _, name in run.images)}",
           f"- **Search:** {_md_inline(view.search_line(result))}", "",
           "### Conclusion", ""]
    conclusion = result.stages.get(Stage.CONCLUSION, "")
    out += [_md_quote(_md(conclusion, strong=True) if conclusion.strip() else "*(none)*"), ""]
    if sure := view.confidence_line(result):
        out += [f"**How sure:** {_md_inline(sure)}", ""]
    out += [f"⚠ {_md_inline(caution)}" + "\n" for caution in view.cautions(result)]
    for stage in view.BODY_STAGES:
        text = result.stages.get(stage, "")
        out += [f"### {stage.title}", "", _md(text) if text.strip() else "*(none)*", ""]
    out += ["### Search", ""]
    segments = view.search_segments(result)
    if not segments:
        out += ["*(no candidates were saved)*", ""]
    for seg in segments:
        out += _md_segment(seg, result)
    return out


def _md_segment(seg: view.Segment, result: SearchResult) -> list[str]:
    out = [f"#### {seg.title}", ""]
    note = view.selection_note(seg, result)
    if note:
        out += [note, ""]
    for c in seg.candidates:
        mark = "✔ " if c.index == seg.chosen else ""
        out += [f"- {mark}**Candidate {c.index + 1}** — "
                f"{view.candidate_facts(c, c.index == seg.chosen, result.select)}", "",
                "  " + _md_code(view.candidate_text(c)).replace("\n", "\n  "), ""]
    for check in seg.checks:
        out += [f"- {view.check_line(check)}"]
    if seg.checks:
        out.append("")
    if seg.verdicts:
        out += ["| Judged | Winner | Reason |", "| --- | --- | --- |"]
        for v in seg.verdicts:
            pair, winner, reason = view.verdict_parts(v)
            out.append(f"| {pair} | {winner} | {_md_inline(reason)} |")
        out.append("")
    return out


def to_markdown(runs: Sequence[StoredRun], image_folder: str | None = None) -> str:
    """The runs as one Markdown document.

    Args:
        runs: The runs, in the order to show them.
        image_folder: Link images as ``<image_folder>/<sha256>.<ext>`` (relative to the
            document; :func:`stagewise.models.storage.export.export` copies them there). None links
            the stored images by their absolute ``file:`` URI.

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
