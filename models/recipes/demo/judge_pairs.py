"""``python -m stagewise.models.recipes.demo.judge_pairs``: the demo judge's accuracy per stage.

Inside a search, the judge meets right-vs-wrong pairs only when the model happened to
sample one of each, so its accuracy there is counted on few and uneven pairs. Here every
puzzle gives, for each stage and for whole answers, its gold content against a wrong one
that differs in one thing (:func:`~stagewise.models.build.puzzles.corrupt_with_fact`),
shown in both orders so that a judge that always picks one position scores 50%. The
prompts, hints and grammar are the search's own (:mod:`stagewise.models.reasoning.judge`),
judged through the :class:`~stagewise.models.reasoning.search_backend.SearchBackend` seam,
with the demo model or ``--model``; the accuracy per stage is printed with 95% intervals.
The puzzles are those of the recipe's validation split (the default: what settings are
chosen on), of its test split (``--split test``: report it once), or of a fresh split
drawn with another seed (``--seed``).
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
from stagewise.models.inference.engine_settings import FALLBACK_CTX, EngineSettings
from stagewise.models.inference.images import PreparedImage, load_image
from stagewise.models.reasoning.judge import judge_text
from stagewise.models.reasoning.search_backend import Prompt, SearchBackend
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.reasoning.stages import STAGES, Stage
from stagewise.models.session import Session, plan

__all__ = ["UNITS", "PairVerdict", "UnitAccuracy", "judge_pairs", "recipe_puzzles",
           "summarise"]

UNITS: tuple[Stage | None, ...] = (*STAGES, None)
"""What is judged: each stage, then whole answers (None), as best-of-N judges them."""


@dataclass(frozen=True)
class PairVerdict:
    """One verdict on a right-vs-wrong pair.

    Attributes:
        puzzle: The puzzle's id.
        unit: The stage's name, or "answer" for whole answers.
        right_first: Whether the right candidate was shown as response 1.
        picked_right: Whether the judge chose the right one.
        forced: Whether the judge ran out of tokens and the choice was forced.
        text: The verdict as written.
    """

    puzzle: str
    unit: str
    right_first: bool
    picked_right: bool
    forced: bool
    text: str


@dataclass(frozen=True)
class UnitAccuracy:
    """How often the judge picked the right candidate of one unit."""

    unit: str
    right: int
    total: int
    forced: int

    @property
    def accuracy(self) -> float:
        return self.right / self.total if self.total else 0.0

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.right, self.total)


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


def judge_pairs(backend: SearchBackend, puzzles: Iterable[Puzzle], *, seed: int = 0,
                max_tokens: int = 32, units: Sequence[Stage | None] = UNITS,
                cancel: threading.Event | None = None) -> Iterator[PairVerdict]:
    """Judge, for every puzzle and unit, its right response against a wrong one, both ways.

    Args:
        backend: The model, through the search's seam.
        puzzles: The puzzles (with their scenes, so that wrong responses can be made).
        seed: Seeds which wrong response each puzzle gets.
        max_tokens: The verdict's token budget (the search's ``max_judge_tokens``).
        units: The units to judge.
        cancel: Set it to stop after the current puzzle.

    Yields:
        Two verdicts per puzzle and unit.
    """
    cancel = cancel or threading.Event()
    for puzzle in puzzles:
        if cancel.is_set():
            return
        rng = random.Random(f"{seed}-{puzzle.id}")
        backend.begin(puzzle_image(puzzle), puzzle.question, backend.stage_mode, cancel)
        try:
            asked: list[tuple[Stage | None, bool]] = []
            prompts: list[Prompt] = []
            for unit in units:
                right, wrong = _pair(puzzle, unit, rng)
                hint = _hint(puzzle, unit)
                for right_first in (True, False):
                    first, second = (right, wrong) if right_first else (wrong, right)
                    text = judge_text(unit, puzzle.question, first, second, hint)
                    prompts.append(Prompt(text, (puzzle.question, first, second, hint)))
                    asked.append((unit, right_first))
            with backend.judging() as session:
                replies = session.judge(prompts, max_tokens)
        finally:
            backend.end()
        for (unit, right_first), reply in zip(asked, replies, strict=True):
            yield PairVerdict(puzzle.id, _unit_name(unit), right_first,
                              reply.choice == (1 if right_first else 2), reply.forced,
                              reply.text)


def summarise(verdicts: Iterable[PairVerdict]) -> list[UnitAccuracy]:
    """Accuracy per unit, in :data:`UNITS` order (units never judged are left out)."""
    counts: dict[str, list[int]] = {}
    for v in verdicts:
        right, total, forced = counts.setdefault(v.unit, [0, 0, 0])
        counts[v.unit] = [right + v.picked_right, total + 1, forced + v.forced]
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
    parser.add_argument("--model", type=Path,
                        help="text model GGUF (default: the demo model)")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json", action="store_true", help="print every verdict as JSON")
    args = parser.parse_args(argv)
    puzzles = recipe_puzzles(args.split, args.seed, args.limit)
    search = SearchSettings()
    # all ten prompts of a puzzle are judged in one batch: more cells than one knockout
    start = time.perf_counter()
    try:
        load = plan(args.model, None,
                    EngineSettings(n_ctx=FALLBACK_CTX, threads=args.threads), search)
        with Session(load) as session:
            verdicts = []
            for verdict in judge_pairs(session.backend, puzzles, seed=args.seed,
                                       max_tokens=search.max_judge_tokens):
                verdicts.append(verdict)
                if args.json:
                    print(json.dumps(verdict.__dict__))
    except StagewiseError as error:
        print(f"judge_pairs: {error}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    print(f"judge on right-vs-wrong pairs: {len(puzzles)} puzzles of the {args.split} split "
          f"(seed {args.seed}), both orders, {load.model.name}, {seconds:.0f} s")
    print(f"{'unit':<11} {'accuracy':>8}  {'95% CI':>11}  {'pairs':>5}  forced")
    for row in summarise(verdicts):
        low, high = row.ci95
        print(f"{row.unit:<11} {row.accuracy:>8.1%}  {low:>5.1%}–{high:<5.1%}  {row.total:>5}  "
              f"{row.forced}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
