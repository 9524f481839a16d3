"""Writing puzzle splits in the LLaVA-CoT-100k layout: JSON lines plus PNG images.

Each line is ``{"id", "image", "conversations": [human, gpt]}`` and nothing else (with
follow-ups, ``[human, gpt, human, gpt]``: the second pair a follow-up question). The splits
draw from independent seeds; a train or validation puzzle whose scene and question equal a
test (or, for train, a validation) puzzle's is dropped and drawn again.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from stagewise.models.build.puzzles.follow_ups import FollowUp, follow_up, follow_up_text
from stagewise.models.build.puzzles.questions import KINDS, Puzzle, answer_text
from stagewise.models.build.puzzles.random_questions import make_puzzle
from stagewise.models.build.puzzles.scenes import Scene, draw

__all__ = ["DEFAULT_SIZES", "follow_up_of", "generate_split", "puzzle_key", "record",
           "write_splits"]

DEFAULT_SIZES: dict[str, int] = {"train": 40000, "val": 500, "test": 1000}
_PRIORITY = ("test", "val", "train")  # earlier splits win duplicates


def puzzle_key(puzzle: Puzzle) -> str:
    """A hash of the scene and the question, for finding duplicates across splits."""
    return hashlib.sha1(repr((puzzle.scene, puzzle.question)).encode()).hexdigest()


def record(puzzle: Puzzle, follow: FollowUp | None = None) -> dict:
    """The LLaVA-CoT-100k record of ``puzzle``; with ``follow``, a second human/gpt pair
    (the follow-up and its four-stage answer) after the first."""
    turns = [
        {"from": "human", "value": puzzle.question},
        {"from": "gpt", "value": answer_text(puzzle)},
    ]
    if follow is not None:
        turns += [{"from": "human", "value": follow.question},
                  {"from": "gpt", "value": follow_up_text(follow)}]
    return {"id": puzzle.id, "image": f"images/{puzzle.id}.png", "conversations": turns}


def follow_up_of(puzzle: Puzzle, seed: int | str) -> FollowUp:
    """The follow-up a written record of ``puzzle`` gets (drawn from the seed and its id)."""
    return follow_up(puzzle, random.Random(f"{seed}-follow-up-{puzzle.id}"))


def generate_split(split: str, size: int, seed: int | str = 0,
                   exclude: set[str] | None = None) -> list[Puzzle]:
    """The puzzles of one split, deterministic given ``split``, ``size``, ``seed``, ``exclude``.

    Args:
        split: The split's name; part of the seed and of the ids.
        size: How many puzzles.
        seed: The data set's seed.
        exclude: Keys (:func:`puzzle_key`) not to produce; the new keys are added to it.

    Returns:
        The puzzles, with ids ``f"{split}-{index:06d}-{kind}"``.
    """
    rng = random.Random(f"{seed}-{split}")
    seen = exclude if exclude is not None else set()
    puzzles: list[Puzzle] = []
    while len(puzzles) < size:
        kind = rng.choice(KINDS)
        puzzle = make_puzzle(rng, f"{split}-{len(puzzles):06d}-{kind}", kind)
        key = puzzle_key(puzzle)
        if key in seen:
            continue
        seen.add(key)
        puzzles.append(puzzle)
    return puzzles


def _save_images(jobs: list[tuple[Scene, str]]) -> None:
    for scene, path in jobs:
        draw(scene).save(path, optimize=True)


def _chunks(items: list, count: int) -> Iterable[list]:
    step = max(1, -(-len(items) // count))
    for start in range(0, len(items), step):
        yield items[start : start + step]


def write_splits(out_dir: str | os.PathLike, sizes: dict[str, int] | None = None,
                 seed: int | str = 0, workers: int | None = None, *,
                 follow_ups: bool = False) -> dict[str, Path]:
    """Write ``out_dir/{split}.jsonl`` and ``out_dir/images/{id}.png`` for each split.

    Args:
        out_dir: The folder; created if needed.
        sizes: Puzzles per split (default :data:`DEFAULT_SIZES`).
        seed: The data set's seed; each split derives its own from it.
        workers: Processes drawing images (default: the CPU count, at most 8; 1: no pool).
        follow_ups: Give every record a follow-up (:func:`follow_up_of`) as its second
            question; the puzzles are the same as without.

    Returns:
        The path of each split's JSON-lines file.
    """
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    out = Path(out_dir)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    order = [s for s in _PRIORITY if s in sizes] + [s for s in sizes if s not in _PRIORITY]
    seen: set[str] = set()
    splits = {split: generate_split(split, sizes[split], seed, seen) for split in order}
    jobs = [(p.scene, str(images / f"{p.id}.png")) for split in order for p in splits[split]]
    workers = workers or min(8, os.cpu_count() or 1)
    if workers <= 1 or len(jobs) < 200:
        _save_images(jobs)
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_save_images, _chunks(jobs, workers * 8)))
    paths: dict[str, Path] = {}
    for split in sizes:
        path = out / f"{split}.jsonl"
        tmp = path.with_suffix(".jsonl.tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            for puzzle in splits[split]:
                follow = follow_up_of(puzzle, seed) if follow_ups else None
                handle.write(json.dumps(record(puzzle, follow), ensure_ascii=False) + "\n")
        tmp.replace(path)
        paths[split] = path
    return paths

