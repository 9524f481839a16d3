"""``python -m stagewise.models.recipes.demo.judge_pairs``: each selection alone, per stage.

Inside a search, a selection meets right-vs-wrong pairs only when the model happened to
sample one of each, so its accuracy there is counted on few and uneven pairs. Here every
puzzle gives, for each stage and for whole answers, its gold content against a wrong one
that differs in one thing (:func:`~stagewise.models.build.puzzles.corrupt_with_fact`). A
pairwise selection (``judge``, ``verdict``) decides the pair shown in both orders, so that
one that always picks a position scores 50%; a pointwise one (``selfcheck``, ``prm``,
``model``) scores both and is right when the right one scores higher (a tie is wrong), and
its *balanced accuracy* counts each candidate scored alone: a right one called right (its
score, a probability, above 0.5) and a wrong one called wrong, the mean of the two shares. The
prompts are the search's own, through the selections themselves and the
:class:`~stagewise.models.reasoning.search_backend.SearchBackend` seam, with the demo model
or ``--model`` (and ``--scorer-model`` for a second model); the accuracy per stage is
printed with 95% intervals. ``logprob`` and ``entropy`` score how the model sampled a
candidate, so they cannot be measured on written pairs. The puzzles are those of the
recipe's validation split (the default: what settings are chosen on), of its test split
(``--split test``: report it once), or of a fresh split drawn with another seed
(``--seed``).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from stagewise.models.build.puzzles import (
    Puzzle,
    answer_text,
    corrupt_with_fact,
    draw,
    generate_split,
)
from stagewise.models.errors import StagewiseError
from stagewise.models.evaluation.stats import wilson_interval
from stagewise.models.events import Candidate
from stagewise.models.inference.engine_settings import FALLBACK_CTX, EngineSettings
from stagewise.models.inference.images import PreparedImage, load_image
from stagewise.models.reasoning.judge import WORDINGS, judge_text
from stagewise.models.reasoning.search_backend import Prompt
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.reasoning.selections import (
    Choosing,
    PairwiseSelection,
    PointwiseSelection,
    Selection,
    selection,
)
from stagewise.models.session import Session, plan
from stagewise.models.stages import STAGES, Stage

__all__ = ["POINTWISE_THRESHOLD", "UNITS", "PairVerdict", "UnitAccuracy", "judge_pairs",
           "recipe_puzzles", "summarise"]

UNITS: tuple[Stage | None, ...] = (*STAGES, None)
"""What is judged: each stage, then whole answers (None), as best-of-N judges them."""


@dataclass(frozen=True)
class PairVerdict:
    """One decision on a right-vs-wrong pair.

    Attributes:
        puzzle: The puzzle's id.
        unit: The stage's name, or "answer" for whole answers.
        right_first: Whether the right candidate was shown as response 1 (pointwise: True).
        picked_right: Whether the selection chose (or scored higher) the right one.
        unread: Whether the judge's reply named no response (read as response 2).
        text: The verdict as written, or the two scores.
        scores: A pointwise selection's scores of the right and the wrong candidate (empty
            for a pairwise one).
    """

    puzzle: str
    unit: str
    right_first: bool
    picked_right: bool
    unread: bool
    text: str
    scores: tuple[float, ...] = ()


POINTWISE_THRESHOLD = 0.5
"""A pointwise score (a probability: P("+"), P("Yes")) above it calls a candidate right."""


@dataclass(frozen=True)
class UnitAccuracy:
    """How often a selection picked the right candidate of one unit; for a pointwise one,
    also how often it called each candidate right or wrong on its own.

    Attributes:
        unit: The stage's name, or "answer".
        right: Pairs where the right candidate won.
        total: Pairs decided.
        unread: Verdicts that named no response.
        right_called: Right candidates scored above :data:`POINTWISE_THRESHOLD`.
        wrong_called: Wrong candidates scored at or below it.
        scored: Pairs with both scores (pointwise selections; 0 for pairwise ones).
    """

    unit: str
    right: int
    total: int
    unread: int
    right_called: int = 0
    wrong_called: int = 0
    scored: int = 0

    @property
    def accuracy(self) -> float:
        return self.right / self.total if self.total else 0.0

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.right, self.total)

    @property
    def balanced_accuracy(self) -> float | None:
        """Pointwise: the mean of the shares of right candidates called right and of wrong
        ones called wrong, each scored alone (None for a pairwise selection). The pairs
        hold one of each, so the classes are balanced and this is also the plain share of
        candidates called right."""
        if not self.scored:
            return None
        return (self.right_called + self.wrong_called) / (2 * self.scored)

    @property
    def balanced_ci95(self) -> tuple[float, float] | None:
        """A 95% Wilson interval of :attr:`balanced_accuracy` over the 2 × ``scored``
        candidates."""
        if not self.scored:
            return None
        return wilson_interval(self.right_called + self.wrong_called, 2 * self.scored)


def _unit_name(unit: Stage | None) -> str:
    return unit.value if unit is not None else "answer"


def _hint(puzzle: Puzzle, unit: Stage | None) -> str:
    """What the search shows the judge besides the responses: the chosen caption before
    reasoning, caption and reasoning before the conclusion (here the gold ones)."""
    stages = puzzle.stages
    if unit is Stage.REASONING:
        return stages[Stage.CAPTION]
    if unit is Stage.CONCLUSION:
        return f"{stages[Stage.CAPTION]}\n{stages[Stage.REASONING]}".strip()
    return ""


def _pair(puzzle: Puzzle, unit: Stage | None, rng: random.Random) -> tuple[str, str]:
    """The right and a wrong response of ``unit`` (whole answers: one stage made wrong)."""
    if unit is None:
        stage = rng.choice(STAGES)
        wrong = {**puzzle.stages, stage: corrupt_with_fact(puzzle, stage, rng).wrong}
        return answer_text(puzzle), answer_text(replace(puzzle, stages=wrong))
    return puzzle.stages[unit], corrupt_with_fact(puzzle, unit, rng).wrong


def puzzle_image(puzzle: Puzzle) -> PreparedImage:
    """The puzzle's picture as the app would read it from a PNG file."""
    buffer = io.BytesIO()
    draw(puzzle.scene).save(buffer, format="PNG")
    return load_image(buffer.getvalue(), name=f"{puzzle.id}.png")


def _context(puzzle: Puzzle, unit: Stage | None) -> tuple[str, str]:
    """The chosen text before ``unit``'s candidates (the gold earlier stages), before and
    after the open tag the search writes for the unit."""
    if unit is None:
        return "", ""
    earlier = STAGES[:STAGES.index(unit)]
    so_far = "\n\n".join(f"{s.open_tag}{puzzle.stages[s]}{s.close_tag}" for s in earlier)
    return so_far, f"{so_far}\n\n{unit.open_tag}" if so_far else unit.open_tag


def judge_pairs(session: Session, puzzles: Iterable[Puzzle], select: str,
                settings: SearchSettings, *, seed: int = 0,
                units: Sequence[Stage | None] = UNITS,
                cancel: threading.Event | None = None) -> Iterator[PairVerdict]:
    """Decide, for every puzzle and unit, its right response against a wrong one.

    Args:
        session: The model (and the second model, for a selection that scores with one).
        puzzles: The puzzles (with their scenes, so that wrong responses can be made).
        select: The selection's name.
        settings: The search's settings the selection reads (its wording, budgets, seed).
        seed: Seeds which wrong response each puzzle gets.
        units: The units to decide.
        cancel: Set it to stop after the current puzzle.

    Yields:
        Two decisions per puzzle and unit (one for a pointwise selection).

    Raises:
        StagewiseError: The selection scores how candidates were sampled (``logprob``,
            ``entropy``), which written pairs do not have.
    """
    chosen_by = selection(select)
    if chosen_by.reads_sampling:
        raise StagewiseError(f"{select} scores how the model sampled a candidate; it cannot "
                             "be measured on written pairs")
    backend = session.backend
    settings = replace(settings, select=select)
    verifier = session.verifier(settings)
    cancel = cancel or threading.Event()
    for puzzle in puzzles:
        if cancel.is_set():
            return
        rng = random.Random(f"{seed}-{puzzle.id}")
        image = puzzle_image(puzzle)
        backend.begin(image, puzzle.question, backend.stage_mode, cancel)
        if verifier is not None:
            verifier.start(image, puzzle.question)
        try:
            decided = []
            for unit in units:
                right, wrong = _pair(puzzle, unit, rng)
                so_far, answer = _context(puzzle, unit)
                job = Choosing(backend, settings, puzzle.question.strip(), answer, unit, 0,
                               so_far, verifier=verifier)
                decided += _decide(chosen_by, job, puzzle, unit, right, wrong)
        finally:
            if verifier is not None:
                verifier.finish()
            backend.end()
        yield from decided


def _decide(chosen_by: Selection, job: Choosing, puzzle: Puzzle, unit: Stage | None,
            right: str, wrong: str) -> list[PairVerdict]:
    """The selection's decision(s) on one pair."""
    name = _unit_name(unit)

    def candidate(index: int, text: str) -> Candidate:
        return Candidate(unit, 0, index, text, 1, 0.0, "closed")

    if not chosen_by.pairwise:
        assert isinstance(chosen_by, PointwiseSelection)
        good, bad = chosen_by.score(job, [candidate(0, right), candidate(1, wrong)])
        return [PairVerdict(puzzle.id, name, True, good > bad, False,
                            f"right {good!r}, wrong {bad!r}", (good, bad))]
    assert isinstance(chosen_by, PairwiseSelection)
    out = []
    with job.backend.judging() as session:
        for right_first in (True, False):
            first, second = (right, wrong) if right_first else (wrong, right)
            shown = (_prompt(job, puzzle, unit, first, second),
                     _prompt(job, puzzle, unit, second, first))
            [verdict] = chosen_by.referee().decide(session, job, 0, [(0, 1)], [shown])
            out.append(PairVerdict(puzzle.id, name, right_first,
                                   verdict.winner == (0 if right_first else 1), verdict.unread,
                                   verdict.text or verdict.reason))
    return out


def _prompt(job: Choosing, puzzle: Puzzle, unit: Stage | None, first: str, second: str
            ) -> Prompt:
    hint = _hint(puzzle, unit)
    text = judge_text(unit, puzzle.question, first, second, hint,
                      wording=job.settings.judge_prompt)
    return Prompt(text, (puzzle.question, first, second, hint))


def summarise(verdicts: Iterable[PairVerdict]) -> list[UnitAccuracy]:
    """Accuracy per unit, in :data:`UNITS` order (units never judged are left out)."""
    counts: dict[str, list[int]] = {}
    for v in verdicts:
        c = counts.setdefault(v.unit, [0] * 6)
        c[0] += v.picked_right
        c[1] += 1
        c[2] += v.unread
        if len(v.scores) == 2:
            c[3] += v.scores[0] > POINTWISE_THRESHOLD
            c[4] += v.scores[1] <= POINTWISE_THRESHOLD
            c[5] += 1
    order = [_unit_name(u) for u in UNITS]
    return [UnitAccuracy(name, *counts[name]) for name in order if name in counts]


RECIPE_SEED, TEST_SIZE, VAL_SIZE = 0, 1000, 300  # the recipe's defaults (its __main__)


def recipe_puzzles(split: str, seed: int, limit: int) -> list[Puzzle]:
    """The first ``limit`` puzzles of a split as the recipe draws it: the test split
    first, the validation split apart from it; with another seed, a fresh test split."""
    seen: set[str] = set()
    test = generate_split("test", TEST_SIZE, seed, seen)
    if split == "test":
        return test[:limit]
    return generate_split("val", VAL_SIZE, seed, seen)[:limit]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stagewise.models.recipes.demo.judge_pairs",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--seed", type=int, default=RECIPE_SEED,
                        help=f"the data set's seed (the recipe's is {RECIPE_SEED})")
    parser.add_argument("--limit", type=int, default=100, help="puzzles (default 100)")
    parser.add_argument("--select", default="judge",
                        help="selections to measure, separated by commas (default judge)")
    parser.add_argument("--judge-prompt", choices=WORDINGS, default=SearchSettings.judge_prompt)
    parser.add_argument("--model", type=Path,
                        help="text model GGUF (default: the demo model)")
    parser.add_argument("--scorer-model", type=Path,
                        help="the second model of a selection that scores with one")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json", action="store_true", help="print every decision as JSON")
    args = parser.parse_args(argv)
    puzzles = recipe_puzzles(args.split, args.seed, args.limit)
    names = [n.strip() for n in args.select.split(",") if n.strip()]
    search = SearchSettings(judge_prompt=args.judge_prompt, scorer_model=args.scorer_model,
                            seed=args.seed)
    # all prompts of a puzzle's unit are asked in one batch: more cells than one knockout
    try:
        load = plan(args.model, None,
                    EngineSettings(n_ctx=FALLBACK_CTX, threads=args.threads), search)
        with Session(load) as session:
            for name in names:
                start = time.perf_counter()
                verdicts = []
                for verdict in judge_pairs(session, puzzles, name, search, seed=args.seed):
                    verdicts.append(verdict)
                    if args.json:
                        print(json.dumps({"select": name, **verdict.__dict__}))
                seconds = time.perf_counter() - start
                _print_table(name, verdicts, puzzles, args, load.model.name, seconds)
    except StagewiseError as error:
        print(f"judge_pairs: {error}", file=sys.stderr)
        return 2
    return 0


def _print_table(name: str, verdicts: list[PairVerdict], puzzles: list[Puzzle],
                 args: argparse.Namespace, model: str, seconds: float) -> None:
    print(f"{name} on right-vs-wrong pairs: {len(puzzles)} puzzles of the {args.split} split "
          f"(seed {args.seed}), {model}, {seconds:.0f} s")
    rows = summarise(verdicts)
    pointwise = any(row.scored for row in rows)
    extra = f"  {'balanced':>8}  {'95% CI':>11}" if pointwise else ""
    print(f"{'unit':<11} {'accuracy':>8}  {'95% CI':>11}  {'pairs':>5}  unread{extra}")
    for row in rows:
        low, high = row.ci95
        line = (f"{row.unit:<11} {row.accuracy:>8.1%}  {low:>5.1%}–{high:<5.1%}  "
                f"{row.total:>5}  {row.unread:>6}")
        if row.balanced_accuracy is not None:
            b_low, b_high = row.balanced_ci95
            line += f"  {row.balanced_accuracy:>8.1%}  {b_low:>5.1%}–{b_high:<5.1%}"
        print(line)
    if pointwise:
        print(f"(accuracy: the right candidate scored higher; balanced: each candidate scored "
              f"alone, called right above {POINTWISE_THRESHOLD:g})")


if __name__ == "__main__":
    sys.exit(main())
