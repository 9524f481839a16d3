"""Between objects and table rows: a run's records written as rows, its SearchResult rebuilt."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from stagewise.models.events import (
    Candidate,
    Check,
    RunWarning,
    SearchResult,
    Timings,
    Verdict,
)
from stagewise.models.stages import STAGES, Stage, parse_answer


def _unit(value: str | None) -> Stage | None:
    return Stage(value) if value is not None else None


def _unit_value(unit: Stage | None) -> str | None:
    return unit.value if unit is not None else None


def _insert_records(db: sqlite3.Connection, run_id: int, candidates: Iterable[Candidate],
                    verdicts: Iterable[Verdict], checks: Iterable[Check],
                    chosen: set[tuple[int, int]]) -> None:
    """Add a run's candidates, verdicts and checks to their tables.

    A candidate is marked chosen when its ``(segment, index)`` is in ``chosen``.
    """
    db.executemany(
        "INSERT OR REPLACE INTO candidates (run, segment, idx, unit, text, n_tokens, "
        "mean_logprob, finish, chosen, score, mean_entropy) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(run_id, c.segment, c.index, _unit_value(c.unit), c.text, c.n_tokens,
          c.mean_logprob, c.finish, (c.segment, c.index) in chosen, c.score, c.mean_entropy)
         for c in candidates])
    db.executemany(
        "INSERT INTO verdicts (run, unit, segment, round, pair_first, pair_second, winner, "
        "reason, text, forced, unread, probability) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(run_id, _unit_value(v.unit), v.segment, v.round, v.first, v.second, v.winner,
          v.reason, v.text, v.forced, v.unread, v.probability) for v in verdicts])
    db.executemany(
        "INSERT INTO checks (run, segment, candidate, correct, text) VALUES (?, ?, ?, ?, ?)",
        [(run_id, c.segment, c.candidate, c.correct, c.text) for c in checks])


def _result(row: sqlite3.Row, settings: dict[str, Any], candidates: list[sqlite3.Row],
            verdicts: list[sqlite3.Row], checks: list[sqlite3.Row]) -> SearchResult:
    """Rebuild a run's SearchResult from its rows."""
    answer = row["answer_text"]
    if row["stages"] is not None:
        saved = json.loads(row["stages"])
        stages = {s: saved.get(s.value, "") for s in STAGES}
    else:
        parsed = parse_answer(answer).stages
        stages = {s: parsed.get(s, "") for s in STAGES}
    status = row["status"] if row["status"] in ("finished", "cancelled") else "cancelled"
    return SearchResult(
        question=row["question"],
        strategy=_column(row, "strategy", settings, "strategy", ""),
        beam=_column(row, "beam", settings, "beam", 0),
        select=_column(row, "selection", settings, "select", ""),
        seed=_column(row, "seed", settings, "seed", 0),
        mode=_column(row, "mode", settings, "mode", ""),
        status=status,
        answer_text=answer,
        stages=stages,
        candidates=tuple(_candidate(c) for c in candidates),
        chosen=tuple(sorted((c["segment"], c["idx"]) for c in candidates if c["chosen"])),
        verdicts=tuple(_verdict(v) for v in verdicts),
        checks=tuple(Check(c["segment"], c["candidate"], bool(c["correct"]), c["text"])
                     for c in checks),
        timings=_timings(row["timings"]),
        warnings=warnings_from(_optional(row, "warnings")),
    )


def _optional(row: sqlite3.Row, name: str) -> Any:
    """A column a history opened read-only at an older schema version may lack (None)."""
    try:
        return row[name]
    except IndexError:
        return None


def warnings_json(warnings: Iterable[RunWarning]) -> str:
    """A run's warnings as the ``warnings`` column keeps them."""
    return json.dumps([{"kind": w.kind, "text": w.text} for w in warnings],
                      ensure_ascii=False)


def warnings_from(text: str | None) -> tuple[RunWarning, ...]:
    """The warnings a ``warnings`` column holds (none for NULL or unreadable JSON)."""
    if not text:
        return ()
    try:
        data = json.loads(text)
    except ValueError:
        return ()
    if not isinstance(data, list):
        return ()
    return tuple(RunWarning(str(w.get("kind", "")), str(w.get("text", "")))
                 for w in data if isinstance(w, dict) and w.get("text"))


def _column(row: sqlite3.Row, name: str, settings: dict[str, Any], key: str,
            default: Any) -> Any:
    """A search parameter: from the run row, else the settings the run started with (the
    search's own object in them, or flat as runs saved them before settings version 2)."""
    value = row[name]
    if value is not None:
        return value
    search = settings.get("search")
    fallback = search.get(key) if isinstance(search, dict) else settings.get(key)
    return fallback if isinstance(fallback, type(default)) else default


def _candidate(row: sqlite3.Row) -> Candidate:
    logprob = row["mean_logprob"]
    return Candidate(
        unit=_unit(row["unit"]), segment=row["segment"], index=row["idx"], text=row["text"],
        n_tokens=row["n_tokens"], mean_logprob=float("nan") if logprob is None else logprob,
        finish=row["finish"], score=row["score"], mean_entropy=row["mean_entropy"])


def _verdict(row: sqlite3.Row) -> Verdict:
    return Verdict(
        unit=_unit(row["unit"]), segment=row["segment"], round=row["round"],
        first=row["pair_first"], second=row["pair_second"], winner=row["winner"],
        reason=row["reason"], text=row["text"], forced=bool(row["forced"]),
        unread=bool(row["unread"]), probability=row["probability"])


def _timings(text: str | None) -> Timings:
    if text is None:
        return Timings()
    data = json.loads(text)
    known = {f.name for f in dataclasses.fields(Timings)}
    values = {k: v for k, v in data.items() if k in known}
    if isinstance(values.get("image_size"), list):  # JSON keeps the pair as a list
        values["image_size"] = tuple(values["image_size"])
    return Timings(**values)
