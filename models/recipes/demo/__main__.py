"""``python -m stagewise.models.recipes.demo OUT``: data, tokenizer, training, GGUF export, parity.

Every step is resumable: run the same command again after a stop and it goes on. With
``--ship`` the quantized pair and the test split are copied into ``models/data/demo/``,
where the app finds its default model.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from stagewise.models.build.gguf_writer import Vocabulary
from stagewise.models.build.puzzles import (
    Puzzle,
    answer_text,
    follow_up,
    follow_up_text,
    generate_split,
    write_splits,
)
from stagewise.models.library.demo import DEMO_TEST, DEMO_VALIDATION, DEMO_VALIDATION_SIZE, demo_dir
from stagewise.models.reasoning.judge import check_text, judge_text
from stagewise.models.recipes.demo.spec import DEMO, MINI, DemoSpec
from stagewise.models.stages import STAGES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stagewise.models.recipes.demo",
                                     description=__doc__)
    parser.add_argument("out", type=Path, help="working folder (data, checkpoints, GGUF files)")
    parser.add_argument("--train-size", type=int, default=40000)
    parser.add_argument("--val-size", type=int, default=300)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=2300)
    parser.add_argument("--minutes", type=float, default=0.0,
                        help="train for about this long instead of --steps (the step count "
                             "is fixed after 20 steps and kept on resuming)")
    parser.add_argument("--cpu-minutes", type=float, default=0.0,
                        help="train within about this many minutes of process CPU time "
                             "(all threads; the step count is fixed after "
                             "50 steps and kept on resuming): on a shared machine, the "
                             "compute an idle one would give")
    parser.add_argument("--judge-share", type=float, default=0.25,
                        help="share of puzzles that also give a judge example (default 0.25)")
    parser.add_argument("--follow-share", type=float, default=0.15,
                        help="share of puzzles that also give a follow-up example (counts "
                             "and attributes: three times as many; default 0.15)")
    parser.add_argument("--default-select", metavar="NAME",
                        help="the selection measured best on validation, written into the "
                             "model's metadata (stagewise.search.select)")
    parser.add_argument("--default-scorer", metavar="FILE",
                        help="that selection's second model, a file name beside the model "
                             "(stagewise.search.scorer_model)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--vision-steps", type=int,
                        help="steps of the vision warm-up on what is in each cell "
                             "(default: TrainSettings')")
    parser.add_argument("--spec", choices=("demo", "mini"), default="demo")
    parser.add_argument("--ship", action="store_true",
                        help="copy the pair and the test split into models/data/demo/")
    args = parser.parse_args(argv)
    # idle OpenMP threads sleep instead of spinning: spinning burns CPU time (the budget
    # --cpu-minutes counts) and slows the other processes of a shared machine
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from stagewise.models.recipes.demo.cells import cell_classes
    from stagewise.models.recipes.demo.examples import ExampleBuilder, build_examples
    from stagewise.models.recipes.demo.export import export_pair
    from stagewise.models.recipes.demo.model import DemoModel, count_parameters
    from stagewise.models.recipes.demo.tokenizer import Tokenizer
    from stagewise.models.recipes.demo.train import TrainSettings, train

    spec: DemoSpec = DEMO if args.spec == "demo" else MINI
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    seen: set[str] = set()
    splits = {name: generate_split(name, size, args.seed, seen)
              for name, size in (("test", args.test_size), ("val", args.val_size),
                                 ("train", args.train_size))}
    print(f"puzzles: {', '.join(f'{k} {len(v)}' for k, v in splits.items())}")
    vocab = _vocabulary(out / "vocab.json", splits["train"])
    print(f"vocabulary: {len(vocab.tokens)} tokens ({len(vocab.merges)} merges)")
    tokenizer = Tokenizer(vocab)
    builder = ExampleBuilder(tokenizer, spec.n_patches)
    shares = {"judge_share": args.judge_share, "follow_share": args.follow_share}
    train_ex = build_examples(builder, splits["train"], seed=args.seed, **shares)
    val_ex = build_examples(builder, splits["val"], seed=args.seed + 1, **shares)
    lengths = [len(e.ids) for e in train_ex]
    print(f"examples: {len(train_ex)} (mean {np.mean(lengths):.0f} tokens, max {max(lengths)}), "
          f"{time.perf_counter() - t0:.0f} s")
    images = _images(splits["train"], spec)
    val_images = _images(splits["val"], spec)
    cells = np.stack([cell_classes(p.scene) for p in splits["train"]])
    val_cells = np.stack([cell_classes(p.scene) for p in splits["val"]])
    model = DemoModel(spec, len(vocab.tokens))
    print(f"model: {count_parameters(model) / 1e6:.2f} M parameters "
          f"(vision and projector {count_parameters(model.vision) / 1e6:.2f} M)")
    settings = TrainSettings(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                             threads=args.threads, minutes=args.minutes,
                             cpu_minutes=args.cpu_minutes,
                             **({} if args.vision_steps is None
                                else {"vision_steps": args.vision_steps}))
    try:
        train(model, train_ex, images, out / "train", settings, image_at=builder.image_at,
              pad_id=tokenizer.eos, val=(val_ex, val_images), cells=cells,
              val_cells=val_cells, log=_log)
    except KeyboardInterrupt:
        return 130
    torch.save(model.state_dict(), out / "model.pt")
    pair = export_pair(model, vocab, out / "gguf", metadata=_defaults(args))
    report = _parity(model, pair, splits["test"][0], spec)
    (out / "parity.json").write_text(json.dumps(report, indent=2))
    print(f"parity: {report}")
    if args.ship:
        _ship(pair, out, args)
    tokenizer.close()
    return 0


def _defaults(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The measured default selection (and its second model), as GGUF metadata."""
    from stagewise.models.session import DEFAULT_SCORER_KEY, DEFAULT_SELECT_KEY

    out = []
    if args.default_select:
        out.append((DEFAULT_SELECT_KEY, args.default_select))
    if args.default_scorer:
        out.append((DEFAULT_SCORER_KEY, args.default_scorer))
    return out


def _log(line: str) -> None:
    print(line, flush=True)


def _vocabulary(path: Path, puzzles: list[Puzzle]) -> Vocabulary:
    from stagewise.models.recipes.demo.tokenizer import build_vocabulary

    if path.exists():
        data = json.loads(path.read_text())
        return Vocabulary(tuple(data["tokens"]), tuple(data["types"]), tuple(data["merges"]),
                          data["bos"], data["eos"])
    texts = [t for p in puzzles[:20000] for t in (p.question, answer_text(p))]
    rng = random.Random("vocabulary")
    texts += [t for p in puzzles[:5000] for f in (follow_up(p, rng),)
              for t in (f.question, follow_up_text(f))]
    sample = puzzles[0]
    for stage in (*STAGES, None):
        texts.append(judge_text(stage, sample.question, "x", "y", "z"))
    texts.append(check_text(sample.question, "x", "y"))
    vocab = build_vocabulary(texts)
    path.write_text(json.dumps({"tokens": vocab.tokens, "types": vocab.types,
                                "merges": vocab.merges, "bos": vocab.bos, "eos": vocab.eos}))
    return vocab


def _images(puzzles: list[Puzzle], spec: DemoSpec) -> np.ndarray:
    from stagewise.models.recipes.demo.parity import pictures

    return pictures(puzzles, spec)


def _parity(model: object, pair: object, puzzle: Puzzle, spec: DemoSpec) -> dict:
    from stagewise.models.recipes.demo.parity import parity_report

    return parity_report(model, (("f16", pair.f16_model), ("quantized", pair.model)),
                         pair.mmproj, _images([puzzle], spec)[0], puzzle.question)


def _ship(pair: object, out: Path, args: argparse.Namespace) -> None:
    target = demo_dir()
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(pair.model, target / pair.model.name)
    shutil.copy2(pair.mmproj, target / pair.mmproj.name)
    test_dir = target / DEMO_TEST.parent
    if test_dir.exists():
        shutil.rmtree(test_dir)
    written = write_splits(test_dir, {"test": args.test_size}, seed=args.seed)
    assert written["test"] == target / DEMO_TEST, written
    ship_validation(target, args.test_size, args.seed)
    shutil.copy2(out / "parity.json", target / "parity.json")
    print(f"shipped to {target}")


def ship_validation(target: Path, test_size: int, seed: int,
                    size: int = DEMO_VALIDATION_SIZE) -> Path:
    """Ship the first ``size`` puzzles of the validation split beside the test split.

    They are the puzzles the model was validated on while training (never the test
    split's); ``stagewise eval --demo`` calibrates retrace's cutoff on them.
    """
    import tempfile

    folder = target / DEMO_VALIDATION.parent
    with tempfile.TemporaryDirectory() as work:
        written = write_splits(work, {"test": test_size, "val": size}, seed=seed, workers=1)
        if folder.exists():
            shutil.rmtree(folder)
        (folder / "images").mkdir(parents=True)
        shutil.copy2(written["val"], target / DEMO_VALIDATION)
        for line in written["val"].read_text(encoding="utf-8").splitlines():
            image = json.loads(line)["image"]
            shutil.copy2(Path(work) / image, folder / image)
    return target / DEMO_VALIDATION


if __name__ == "__main__":
    sys.exit(main())
