"""``python -m stagewise.models.recipes.demo.verifier OUT``: the demo's process reward model.

A second tiny vision model of the demo's kind (llama.cpp's ``llama`` text model and ``mlp``
projector, the same writer and the same parity check), trained only to say whether one
stage of an answer is right: pointwise, in the format the ``prm`` selection reads
(:mod:`stagewise.models.reasoning.prm_verifier`, VL-PRM's): a system message, then the
image and ``### Question:`` with the first step in the first user turn, one later stage a
user turn, every earlier assistant turn "+", and the reply to the newest step "+" (right
so far) or "-".

Each training example is one puzzle's gold stages up to a stage, then that stage either
right or made wrong in one fact (:func:`~stagewise.models.build.puzzles.corrupt_with_fact`:
a count, colour, shape, size, position, arithmetic result or answer), half and half, every
stage equally often; the loss is on the "+"/"-" token alone. The system message is short
and written into the GGUF (:data:`~stagewise.models.reasoning.prm_verifier.SYSTEM_KEY`),
where the ``prm`` selection reads it.

Like the demo recipe it is seeded and resumable: run the same command again after a stop.
``--ship`` copies the pair and its parity report beside the demo pair.
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

from stagewise.models.build.gguf_writer import TextHyper, Vocabulary
from stagewise.models.build.puzzles import Puzzle, corrupt_with_fact, generate_split
from stagewise.models.library.demo import (
    DEMO_VERIFIER,
    DEMO_VERIFIER_MMPROJ,
    DEMO_VERIFIER_PARITY,
    demo_dir,
)
from stagewise.models.reasoning.prm_verifier import BAD, GOOD, SYSTEM_KEY, step_turns
from stagewise.models.recipes.demo.examples import Example
from stagewise.models.recipes.demo.spec import DEMO, MINI, DemoSpec
from stagewise.models.recipes.demo.tokenizer import Tokenizer, prompt_parts
from stagewise.models.stages import STAGES, Stage

__all__ = ["VERIFIER", "VERIFIER_NAME", "VERIFIER_SYSTEM", "StepExamples", "step_examples"]

VERIFIER_SYSTEM = ("Check the newest step of the solution against the image, the question "
                   "and the steps before it. Answer + if every step so far is right, "
                   "- if any is wrong.")
"""The verifier's system message (in its GGUF under ``stagewise.prm.system_prompt``)."""

VERIFIER_NAME = DEMO_VERIFIER.removesuffix("-Q8_0.gguf")

VERIFIER = DemoSpec(
    text=TextHyper(n_embd=192, n_layer=4, n_head=6, n_head_kv=2, n_ff=512, n_ctx_train=2048),
    image_size=DEMO.image_size, patch_size=DEMO.patch_size, v_embd=DEMO.v_embd,
    v_blocks=DEMO.v_blocks, v_head=DEMO.v_head, v_ff=DEMO.v_ff,
)
"""The verifier's sizes: the demo's vision tower, the first demo model's 4-block decoder."""


class StepExamples:
    """Turns a puzzle's stage (right or wrong) into the verifier's token sequence.

    Args:
        tokenizer: The verifier's tokenizer.
        n_image: Embeddings one image becomes.
        system: The system message.
    """

    def __init__(self, tokenizer: Tokenizer, n_image: int,
                 system: str = VERIFIER_SYSTEM) -> None:
        self.tok, self.n_image, self.system = tokenizer, n_image, system
        self.image_at = len(tokenizer.encode(prompt_parts("x", system=system).before))
        self.good, self.bad = self._single(GOOD), self._single(BAD)

    def _single(self, text: str) -> int:
        ids = self.tok.encode(text)
        if len(ids) != 1:
            raise AssertionError(f"{text!r} is not one token of the verifier's vocabulary")
        return ids[0]

    def step(self, puzzle: Puzzle, image: int, stage: Stage, right: bool,
             rng: random.Random) -> Example:
        """The gold stages before ``stage``, then ``stage`` right or made wrong; the reply
        ("+" or "-") is the last token."""
        steps = [puzzle.stages[s] for s in STAGES[:STAGES.index(stage)]]
        newest = puzzle.stages[stage] if right else corrupt_with_fact(puzzle, stage, rng).wrong
        turns = step_turns(puzzle.question, [*steps, newest])
        parts = prompt_parts(turns[-1][0], earlier=turns[:-1], system=self.system)
        before, after = self.tok.encode(parts.before), self.tok.encode(parts.after)
        if len(before) != self.image_at:
            raise AssertionError("the chat template put the image somewhere else")
        prompt = before + [self.tok.eos] * self.n_image + after
        ids = [*prompt, self.good if right else self.bad]
        offset = len(before) + self.n_image
        gold = [*steps, newest] if right else steps
        aux = tuple((offset + a, offset + b) for a, b in self._spans(parts.after, after, gold))
        return Example(np.array(ids, dtype=np.int32), len(prompt), image, stage.value, aux)

    def _spans(self, text: str, ids: list[int], steps: list[str]) -> list[tuple[int, int]]:
        """The token spans of ``steps`` (each found in turn in ``text``, tokenized as
        ``ids``): where the tokens of the text before a step and up to its end are a prefix
        of ``ids``, so that the span is the step's own tokens; a step that does not
        tokenize apart from its neighbours is left out."""
        spans, at = [], 0
        for step in steps:
            start = text.index(step, at)
            at = start + len(step)
            head, upto = self.tok.encode(text[:start]), self.tok.encode(text[:at])
            if ids[: len(head)] == head and ids[: len(upto)] == upto and len(upto) > len(head):
                spans.append((len(head), len(upto)))
        return spans


def step_examples(builder: StepExamples, puzzles: list[Puzzle], *, seed: int = 0,
                  per_puzzle: int = 2) -> list[Example]:
    """``per_puzzle`` examples a puzzle: a stage drawn evenly, right or wrong half and half.

    Each example's gold steps (every earlier one, and the newest when it is right) are its
    ``aux`` spans: predicting them, from the image and the steps before, gives the verifier
    a dense signal about what is right where the "+"/"-" gives one bit.
    """
    rng = random.Random(f"verifier-{seed}")
    return [builder.step(puzzle, index, rng.choice(STAGES), rng.random() < 0.5, rng)
            for index, puzzle in enumerate(puzzles) for _ in range(per_puzzle)]


def balanced_accuracy(model: object, examples: list[Example], images: np.ndarray,
                      builder: StepExamples, batch: int = 64) -> dict[str, float]:
    """Per stage, in PyTorch: the mean of the shares of right and of wrong steps read right
    (P("+") above P("-") for a right one, below for a wrong one)."""
    import torch

    from stagewise.models.recipes.demo.train import make_batch

    tally: dict[str, list[int]] = {}
    model.eval()
    with torch.no_grad():
        for start in range(0, len(examples), batch):
            part = examples[start : start + batch]
            b = make_batch(part, images, model, builder.tok.eos)
            logits = model(b.tokens, image_at=builder.image_at, has_image=b.has_image,
                           image=model.vision(b.pixels))
            for row, e in enumerate(part):
                last = logits[row, len(e.ids) - 2]
                said_good = bool(last[builder.good] > last[builder.bad])
                is_good = int(e.ids[-1]) == builder.good
                counts = tally.setdefault(e.kind, [0, 0, 0, 0])  # right+, all+, right-, all-
                counts[0 if is_good else 2] += said_good == is_good
                counts[1 if is_good else 3] += 1
    return {stage.value: (c[0] / max(1, c[1]) + c[2] / max(1, c[3])) / 2
            for stage in STAGES if (c := tally.get(stage.value))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stagewise.models.recipes.demo.verifier",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="working folder (data, checkpoints, GGUF files)")
    parser.add_argument("--train-size", type=int, default=40000)
    parser.add_argument("--val-size", type=int, default=300)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--per-puzzle", type=int, default=2,
                        help="examples a training puzzle gives (default 2)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--cpu-minutes", type=float, default=0.0,
                        help="train within about this many minutes of process CPU time")
    parser.add_argument("--aux-weight", type=float, default=0.05,
                        help="loss weight of each token of the gold steps, predicted beside "
                             "the \"+\"/\"-\" (weight 1; default 0.05)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--vision-steps", type=int, default=1000)
    parser.add_argument("--spec", choices=("verifier", "mini"), default="verifier")
    parser.add_argument("--ship", action="store_true",
                        help="copy the pair and its parity report beside the demo pair")
    args = parser.parse_args(argv)
    # idle OpenMP threads sleep instead of spinning: spinning burns CPU time (the budget
    # --cpu-minutes counts) and slows the other processes of a shared machine
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from stagewise.models.recipes.demo.cells import cell_classes
    from stagewise.models.recipes.demo.export import export_pair
    from stagewise.models.recipes.demo.model import DemoModel, count_parameters
    from stagewise.models.recipes.demo.parity import pictures
    from stagewise.models.recipes.demo.train import TrainSettings, train

    spec = VERIFIER if args.spec == "verifier" else MINI
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    seen: set[str] = set()  # the demo recipe's splits: the same puzzles, the same exclusions
    splits = {name: generate_split(name, size, args.seed, seen)
              for name, size in (("test", args.test_size), ("val", args.val_size),
                                 ("train", args.train_size))}
    vocab = _vocabulary(out / "vocab.json", splits["train"])
    tokenizer = Tokenizer(vocab)
    builder = StepExamples(tokenizer, spec.n_patches)
    train_ex = step_examples(builder, splits["train"], seed=args.seed,
                             per_puzzle=args.per_puzzle)
    val_ex = step_examples(builder, splits["val"], seed=args.seed + 1, per_puzzle=4)
    lengths = [len(e.ids) for e in train_ex]
    print(f"vocabulary: {len(vocab.tokens)} tokens; examples: {len(train_ex)} (mean "
          f"{np.mean(lengths):.0f} tokens, max {max(lengths)}), "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    images, val_images = pictures(splits["train"], spec), pictures(splits["val"], spec)
    cells = np.stack([cell_classes(p.scene) for p in splits["train"]])
    val_cells = np.stack([cell_classes(p.scene) for p in splits["val"]])
    model = DemoModel(spec, len(vocab.tokens))
    print(f"model: {count_parameters(model) / 1e6:.2f} M parameters", flush=True)
    settings = TrainSettings(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                             threads=args.threads, cpu_minutes=args.cpu_minutes,
                             vision_steps=args.vision_steps, aux_weight=args.aux_weight)
    try:
        train(model, train_ex, images, out / "train", settings, image_at=builder.image_at,
              pad_id=tokenizer.eos, val=(val_ex, val_images), cells=cells,
              val_cells=val_cells, log=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        return 130
    torch.save(model.state_dict(), out / "model.pt")
    accuracy = balanced_accuracy(model, val_ex, val_images, builder)
    print("validation balanced accuracy (PyTorch): "
          + ", ".join(f"{k} {v:.1%}" for k, v in accuracy.items()), flush=True)
    pair = export_pair(model, vocab, out / "gguf", name=VERIFIER_NAME,
                       metadata=[(SYSTEM_KEY, VERIFIER_SYSTEM)])
    report = _parity(model, pair, splits["test"][0], spec, builder)
    report["validation_balanced_accuracy"] = accuracy
    (out / "parity.json").write_text(json.dumps(report, indent=2))
    print(f"parity: {report}", flush=True)
    if args.ship:
        target = demo_dir()
        shutil.copy2(pair.model, target / DEMO_VERIFIER)
        shutil.copy2(pair.mmproj, target / DEMO_VERIFIER_MMPROJ)
        shutil.copy2(out / "parity.json", target / DEMO_VERIFIER_PARITY)
        print(f"shipped to {target}")
    tokenizer.close()
    return 0


def _vocabulary(path: Path, puzzles: list[Puzzle]) -> Vocabulary:
    from stagewise.models.recipes.demo.tokenizer import build_vocabulary

    if path.exists():
        data = json.loads(path.read_text())
        return Vocabulary(tuple(data["tokens"]), tuple(data["types"]), tuple(data["merges"]),
                          data["bos"], data["eos"])
    rng = random.Random("verifier-vocabulary")
    texts = [VERIFIER_SYSTEM]
    for puzzle in puzzles[:10000]:  # the prompt's texts, right and wrong stages
        texts += [user for user, _ in step_turns(puzzle.question, list(puzzle.stages.values()))]
        texts += [corrupt_with_fact(puzzle, s, rng).wrong for s in STAGES]
    vocab = build_vocabulary(texts)
    path.write_text(json.dumps({"tokens": vocab.tokens, "types": vocab.types,
                                "merges": vocab.merges, "bos": vocab.bos, "eos": vocab.eos}))
    return vocab


def _parity(model: object, pair: object, puzzle: Puzzle, spec: DemoSpec,
            builder: StepExamples) -> dict:
    """The verifier's logits on a PRM prompt (the conclusion step) through llama.cpp and
    PyTorch."""
    from stagewise.models.recipes.demo.parity import parity_report, pictures

    turns = step_turns(puzzle.question, [puzzle.stages[s] for s in STAGES])
    return parity_report(model, (("f16", pair.f16_model), ("quantized", pair.model)),
                         pair.mmproj, pictures([puzzle], spec)[0], turns[-1][0],
                         earlier=turns[:-1], system=builder.system)


if __name__ == "__main__":
    sys.exit(main())
