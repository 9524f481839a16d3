"""``python -m stagewise.models.recipes.demo OUT``: data, tokenizer, training, GGUF export, parity.

Every step is resumable: run the same command again after a stop and it goes on. With
``--ship`` the quantized pair and the test split are copied into ``models/data/demo/``,
where the app finds its default model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from stagewise.models.build.gguf_writer import Vocabulary
from stagewise.models.build.puzzles import Puzzle, answer_text, draw, generate_split, write_splits
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
    train_ex = build_examples(builder, splits["train"], seed=args.seed)
    val_ex = build_examples(builder, splits["val"], seed=args.seed + 1)
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
                             **({} if args.vision_steps is None
                                else {"vision_steps": args.vision_steps}))
    try:
        train(model, train_ex, images, out / "train", settings, image_at=builder.image_at,
              pad_id=tokenizer.eos, val=(val_ex, val_images), cells=cells,
              val_cells=val_cells, log=_log)
    except KeyboardInterrupt:
        return 130
    torch.save(model.state_dict(), out / "model.pt")
    pair = export_pair(model, vocab, out / "gguf")
    report = _parity(model, pair, splits["test"][0], spec)
    (out / "parity.json").write_text(json.dumps(report, indent=2))
    print(f"parity: {report}")
    if args.ship:
        _ship(pair, out, args)
    tokenizer.close()
    return 0


def _log(line: str) -> None:
    print(line, flush=True)


def _vocabulary(path: Path, puzzles: list[Puzzle]) -> Vocabulary:
    from stagewise.models.recipes.demo.tokenizer import build_vocabulary

    if path.exists():
        data = json.loads(path.read_text())
        return Vocabulary(tuple(data["tokens"]), tuple(data["types"]), tuple(data["merges"]),
                          data["bos"], data["eos"])
    texts = [t for p in puzzles[:20000] for t in (p.question, answer_text(p))]
    sample = puzzles[0]
    for stage in (*STAGES, None):
        texts.append(judge_text(stage, sample.question, "x", "y", "z"))
    texts.append(check_text(sample.question, "x", "y"))
    vocab = build_vocabulary(texts)
    path.write_text(json.dumps({"tokens": vocab.tokens, "types": vocab.types,
                                "merges": vocab.merges, "bos": vocab.bos, "eos": vocab.eos}))
    return vocab


def _images(puzzles: list[Puzzle], spec: DemoSpec) -> np.ndarray:
    size = (spec.image_size, spec.image_size)
    return np.stack([np.asarray(draw(p.scene).convert("RGB").resize(size)) for p in puzzles])


def _parity(model: object, pair: object, puzzle: Puzzle, spec: DemoSpec) -> dict:
    from stagewise.models.recipes.demo.parity import llama_logits, torch_logits

    pixels = _images([puzzle], spec)[0]
    report = {}
    for label, path in (("f16", pair.f16_model), ("quantized", pair.model)):
        ll = llama_logits(path, pair.mmproj, pixels, puzzle.question)
        tl = torch_logits(model, pixels, ll)
        report[label] = {"max_abs_diff": float(np.abs(ll.logits - tl).max()),
                         "logit_range": float(tl.max() - tl.min()),
                         "same_argmax": bool(ll.logits.argmax() == tl.argmax())}
    return report


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
