"""What the confidence badge's labels are worth: accuracy per label on the demo's puzzles.

Usage::

    python bench/confidence.py [--limit 500] [--threads 1] [--split test]

Answers the first ``--limit`` puzzles of the demo's held-out split with the settings of the
README's tables (256 tokens a stage; sampled strategies with top-k 50, temperature 0.6,
top_p 0.9; seed 0 plus the question's index), as ``stagewise eval --demo`` does, with:
greedy decoding, a sampled single pass, stage-level beam N=4 and best-of-N N=4 (each with
its default selection, log-probability). For each it computes the run's confidence
(:func:`stagewise.models.reasoning.confidence.confidence_of`) and prints, per level, how
many answers had it and how many of those were right. The figures go into
:data:`stagewise.models.reasoning.measured.LEVEL_RIGHT`.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from stagewise.models.evaluation import read_items, score
from stagewise.models.evaluation.results import make_configs
from stagewise.models.events import AnswerFinished
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.images import load_image
from stagewise.models.library.demo import demo_dir
from stagewise.models.reasoning.confidence import confidence_of
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.session import Session, plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--split", choices=("test", "val"), default="test")
    args = parser.parse_args()
    items = read_items(demo_dir() / args.split / f"{args.split}.jsonl")[:args.limit]
    base = SearchSettings(max_stage_tokens=256)
    configs = make_configs(("greedy", "single", "stage", "best-of-n"), 4)
    tally: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    load = plan(None, None, EngineSettings(threads=args.threads), base)
    with Session(load) as session:
        for index, item in enumerate(items):
            image = load_image(item.image)
            for config in configs:
                settings = config.settings(base, base.seed + index)
                result = None
                for event in session.ask(image, item.question, settings):
                    if isinstance(event, AnswerFinished):
                        result = event.result
                assert result is not None
                found = confidence_of(result)
                level = found.level if found is not None else "none"
                counts = tally[(config.name, level)]
                counts[0] += 1
                counts[1] += score(result.conclusion, item)
    print(f"{len(items)} {args.split} puzzles of the demo; right / answers per level")
    print("| run | level | answers | right |")
    print("|---|---|---|---|")
    for (name, level), (n, right) in sorted(tally.items()):
        print(f"| {name} | {level} | {n} | {right / n:.1%} |")


if __name__ == "__main__":
    main()
