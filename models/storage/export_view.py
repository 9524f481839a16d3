"""What the Markdown and the HTML export both show of a run: segments, facts, notes.

The search's candidates, checks and verdicts grouped by segment (:func:`search_segments`), and
the lines that describe them, for :mod:`stagewise.models.storage.export_markdown` and
:mod:`stagewise.models.storage.export_html` to format. Qt-free.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from stagewise.models.events import Candidate, Check, SearchResult, Verdict
from stagewise.models.reasoning.confidence import confidence_of, explain
from stagewise.models.reasoning.judge import name_candidates
from stagewise.models.reasoning.run_view import SavedSegment, cautions_of, saved_segments
from stagewise.models.reasoning.selections import SELECTIONS
from stagewise.models.reasoning.strategies import STRATEGIES
from stagewise.models.stages import STAGES, Stage, parse_answer
from stagewise.models.storage.history import StoredRun

__all__ = [
    "BODY_STAGES",
    "Segment",
    "asked_date",
    "candidate_facts",
    "candidate_text",
    "cautions",
    "check_line",
    "confidence_line",
    "search_line",
    "search_segments",
    "selection_note",
    "status_line",
    "suggested_name",
    "verdict_parts",
]

BODY_STAGES = (Stage.SUMMARY, Stage.CAPTION, Stage.REASONING)
"""The stages shown after the conclusion, in order."""


Segment = SavedSegment
"""One segment of the search as exports show it (grouped as the run view groups it)."""


def confidence_line(result: SearchResult) -> str:
    """How sure the run was of its conclusion and what that has been worth, as the window's
    badge and tooltip say it (``"3 of 4 agree: …"``); "" when it has no confidence."""
    found = confidence_of(result)
    if found is None:
        return ""
    return f"{found.label}: {explain(found, result.strategy)}"


def cautions(result: SearchResult) -> list[str]:
    """The run's warnings and doubts, as the window shows them under the Conclusion."""
    return cautions_of(result)


def search_segments(result: SearchResult) -> list[Segment]:
    """The result's segments in order, titled (``"Reasoning, part 2"`` when a stage has many)."""
    ordered = saved_segments(result)
    counts: dict[Stage | None, int] = {}
    for seg in ordered:
        counts[seg.unit] = counts.get(seg.unit, 0) + 1
    seen: dict[Stage | None, int] = {}
    for seg in ordered:
        seen[seg.unit] = seen.get(seg.unit, 0) + 1
        name = seg.unit.title if seg.unit is not None else "Whole answer"
        seg.title = name if counts[seg.unit] == 1 else f"{name}, part {seen[seg.unit]}"
    return ordered


def _number(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "n/a"


def candidate_facts(c: Candidate, chosen: bool, select: str = "") -> str:
    """A candidate's facts on one line: chosen, why it stopped, tokens, mean log-prob, and
    the score its selection gave it."""
    facts = ["chosen"] if chosen else []
    facts += [f"finish: {c.finish}", f"{c.n_tokens} tokens",
              f"mean log-prob {_number(c.mean_logprob)}"]
    chosen_by = SELECTIONS.find(select)
    if c.score is not None and chosen_by is not None:
        facts.append(f"{chosen_by.score_label} {chosen_by.format_score(c.score)}")
    return " · ".join(facts)


def search_line(result: SearchResult) -> str:
    """The search's settings on one line: strategy, beam, selection, seed, stage mode."""
    known = STRATEGIES.find(result.strategy)
    strategy = known.title if known else result.strategy or "unknown search"
    parts = [strategy, f"beam {result.beam}"]
    if result.select:
        chosen_by = SELECTIONS.find(result.select)
        parts.append(chosen_by.title if chosen_by else f"{result.select} selection")
    parts.append(f"seed {result.seed}")
    if result.mode:
        parts.append(f"{result.mode} stages")
    return ", ".join(parts)


def selection_note(seg: Segment, result: SearchResult) -> str:
    """How the segment's winner was chosen, for people ("" when it says nothing new)."""
    if len(seg.candidates) <= 1:
        return "A single candidate."
    if seg.verdicts:
        return "Chosen by the judge's knockout tournament."
    if seg.chosen is None:
        return "No choice was made (the run stopped first)."
    chosen_by = SELECTIONS.find(result.select)
    if chosen_by is None or chosen_by.pairwise:
        return ""
    return f"Chosen by the highest {chosen_by.score_label}."


def check_line(check: Check) -> str:
    """A correctness check as a sentence (candidates counted from 1)."""
    verdict = "passed" if check.correct else "failed"
    return f"Candidate {check.candidate + 1} {verdict} the correctness check."


def verdict_parts(v: Verdict) -> tuple[str, str, str]:
    """(round and pair, winner, reason) of a verdict, for people (candidates from 1; the
    judge's "response 1/2", places in the pair, named as the candidates they were)."""
    pair = f"Round {v.round + 1}: candidate {v.first + 1} vs {v.second + 1}"
    winner = f"candidate {v.winner + 1}" + (" (forced)" if v.forced else "")
    return pair, winner, name_candidates(v.reason, v.first, v.second) if v.reason else "—"


def candidate_text(c: Candidate) -> str:
    """A candidate's words without the model's stage tags: its stage's content, or for a
    whole answer each stage on a line of its own, titled."""
    if c.unit is None:
        stages = parse_answer(c.text).stages
        lines = [f"{stage.title}: {stages[stage]}" for stage in STAGES if stages.get(stage)]
        return "\n".join(lines) or c.text.strip()
    content = parse_answer(c.text).stages.get(c.unit)
    if not content:  # the open tag was written by the search, before the candidate
        content = parse_answer(c.unit.open_tag + c.text).stages.get(c.unit)
    return content or c.text.strip()


def asked_date(run: StoredRun) -> str:
    """When the run was asked, in UTC to the minute."""
    return run.entry.created.strftime("%Y-%m-%d %H:%M UTC")


def status_line(run: StoredRun) -> str:
    """The run's status, with its error if it has one."""
    return f"{run.entry.status}: {run.error}" if run.error else run.entry.status



NAME_WORDS_MAX = 60
"""The most characters of a question's words in a suggested export name."""


def suggested_name(runs: Sequence[StoredRun], suffix: str = ".md") -> str:
    """A file name for an export: the question's first words and the day it was asked
    (``stagewise-how-many-red-circles-2026-12-03.md``), or the number of questions and
    the last day for several. The words are cut to :data:`NAME_WORDS_MAX` characters, so
    that the name stays far below the file systems' 255 bytes."""
    if not runs:
        return f"stagewise{suffix}"
    day = max(run.entry.created for run in runs).strftime("%Y-%m-%d")
    if len(runs) > 1:
        return f"stagewise-{len(runs)}-questions-{day}{suffix}"
    words = re.findall(r"[a-z0-9]+", runs[0].entry.question.lower())[:6]
    slug = "-".join(words)[:NAME_WORDS_MAX].strip("-")
    return f"stagewise-{slug or 'question'}-{day}{suffix}"
