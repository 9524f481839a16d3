"""Writes puzzle splits.

``python -m stagewise.models.build.puzzles OUT_DIR [--train N] [--val N] [--test N] [--seed S]
[--follow-ups]``
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

from stagewise.models.build.puzzles.dataset import DEFAULT_SIZES, write_splits


def main(argv: list[str] | None = None) -> int:
    """Write the splits and print how many puzzles of each kind each has."""
    parser = argparse.ArgumentParser(prog="python -m stagewise.models.build.puzzles",
                                     description="Write synthetic LLaVA-CoT puzzle splits.")
    parser.add_argument("out_dir")
    for split, size in DEFAULT_SIZES.items():
        parser.add_argument(f"--{split}", type=int, default=size, metavar="N")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--follow-ups", action="store_true",
                        help="give every record a follow-up question as its second turn "
                             "(for stagewise eval's follow-up pairs)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    sizes = {split: getattr(args, split) for split in DEFAULT_SIZES}
    paths = write_splits(args.out_dir, sizes, seed=args.seed, workers=args.workers,
                         follow_ups=args.follow_ups)
    for split, path in paths.items():
        with path.open(encoding="utf-8") as handle:
            kinds = Counter(json.loads(line)["id"].rsplit("-", 1)[1] for line in handle)
        detail = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
        print(f"{split}: {sum(kinds.values())} ({detail}) -> {path}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
