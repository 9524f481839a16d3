"""An evaluation report as text for a terminal: tables and one-line comparisons."""

from __future__ import annotations

from stagewise.models.evaluation.results import EvalReport, StrategyReport
from stagewise.models.reasoning.strategies import STRATEGIES

__all__ = ["format_report"]


def format_report(report: EvalReport) -> str:
    """The report as text: the strategy table, comparisons, judge accuracy, kinds, errors."""
    s = report.settings
    lines = []
    if report.status == "cancelled":
        lines.append(f"cancelled: {report.done} of {report.total} questions done")
    lines.append(f"{report.done} questions · seed {s.seed} · at most {s.max_stage_tokens} "
                 f"tokens per stage · temperature {s.sampling.temperature:g}, "
                 f"top_p {s.sampling.top_p:g}")
    if any(not STRATEGIES.get(r.config.strategy).uses_beam for r in report.strategies):
        cutoff = "default" if s.retrace_cutoff is None else f"{s.retrace_cutoff:.4g}"
        lines.append(f"retrace: cutoff {cutoff}"
                     + (f" ({report.calibration})" if report.calibration else ""))
    lines.append("")
    lines += _table(
        ("strategy", "beam", "select", "n", "accuracy", "95% CI", "s/question",
         "tokens/question"),
        [_strategy_row(r) for r in report.strategies],
        right=(False, True, False, True, True, True, True, True),
    )
    comparisons = report.comparisons()
    if comparisons:
        lines.append("")
    for name, base, d in comparisons:
        lines.append(
            f"{name} vs {base}: {100 * d.difference:+.1f} points "
            f"(95% CI {100 * d.low:+.1f}..{100 * d.high:+.1f}; {d.a_only} won, {d.b_only} lost "
            f"of {d.n}): {_verdict_words(d.verdict, base)}"
        )
    judged = [r for r in report.strategies if r.config.chooses]
    if judged:
        lines.append("")
    for r in judged:
        lines.append(_judge_line(r))
    lines += _follow_up_lines(report)
    lines += _kinds(report)
    lines += _errors(report)
    return "\n".join(lines) + "\n"


def _strategy_row(r: StrategyReport) -> tuple[str, ...]:
    low, high = r.interval
    accuracy = f"{100 * r.accuracy:.1f}%" if r.n else "-"
    interval = f"{100 * low:.1f}..{100 * high:.1f}%" if r.n else "-"
    uses_beam = STRATEGIES.get(r.config.strategy).uses_beam
    beam = str(r.config.beam) if uses_beam else "own"  # retrace: the paper's sizes
    select = r.config.select if r.config.chooses else "-"
    return (r.config.name, beam, select, str(r.n), accuracy, interval,
            f"{r.seconds_per_question:.2f}", f"{r.tokens_per_question:.1f}")


def _verdict_words(verdict: str, base: str) -> str:
    if verdict == "better":
        return f"better than {base} by more than the noise"
    if verdict == "worse":
        return f"worse than {base} by more than the noise"
    return "within the noise"


def _judge_line(r: StrategyReport) -> str:
    right, counted = r.judge_total
    select = r.config.select
    if not counted:
        return (f"{select} ({r.config.name}): no comparison of a right candidate with a "
                "wrong one")
    units = ", ".join(f"{unit} {a}/{n}" for unit, (a, n) in r.judge_by_unit().items())
    unread = f"; {r.unread} verdicts named neither response" if r.unread else ""
    return (f"{select} ({r.config.name}): picked the right candidate in {right} of {counted} "
            f"comparisons between a right and a wrong one ({100 * right / counted:.1f}%): "
            f"{units}{unread}")


def _follow_up_lines(report: EvalReport) -> list[str]:
    tallies = [(r.config.name, t) for r in report.strategies if (t := r.follow_up_tally())]
    if not tallies:
        return []
    lines = [""]
    for name, t in tallies:
        low, high = t.interval
        lines.append(f"follow-ups ({name}): the second answer right in {t.right_after_right} "
                     f"of {t.first_right} where the first was right "
                     f"({100 * t.rate_after_right:.1f}%, 95% CI {100 * low:.1f}..{100 * high:.1f}"
                     f"%); {t.right} of {t.asked} in all")
    return lines


def _kinds(report: EvalReport) -> list[str]:
    kinds = sorted({kind for r in report.strategies for kind in r.by_kind() if kind})
    if not kinds:
        return []
    names = [r.config.name for r in report.strategies]
    rows = []
    for kind in kinds:
        cells = []
        n = 0
        for r in report.strategies:
            right, n = r.by_kind().get(kind, (0, 0))
            cells.append(f"{100 * right / n:.1f}%" if n else "-")
        rows.append((kind, str(n), *cells))
    return ["", *_table(("kind", "n", *names), rows,
                        right=(False, True, *(True for _ in names)))]


def _errors(report: EvalReport) -> list[str]:
    failed = [(r.config.name, item) for r in report.strategies for item in r.items
              if item.error]
    if not failed:
        return []
    name, first = failed[0]
    return ["", f"{len(failed)} failed run(s), counted as wrong; the first: "
                f"{first.item_id} ({name}): {first.error}"]


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]],
           right: tuple[bool, ...]) -> list[str]:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        cells = (c.rjust(w) if r else c.ljust(w)
                 for c, w, r in zip(row, widths, right, strict=True))
        return "  ".join(cells).rstrip()

    return [line(header), *(line(row) for row in rows)]
