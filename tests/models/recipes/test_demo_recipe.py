"""The demo recipe at a tiny size: tokenizer, examples, training, GGUF export, parity."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from stagewise.models.build.puzzles import answer_text, draw, generate_split  # noqa: E402
from stagewise.models.build.tiny_vlm import STAGE_TAGS  # noqa: E402
from stagewise.models.reasoning.judge import read_choice  # noqa: E402
from stagewise.models.recipes.demo.examples import ExampleBuilder, build_examples  # noqa: E402
from stagewise.models.recipes.demo.export import export_pair, load_pair  # noqa: E402
from stagewise.models.recipes.demo.model import DemoModel  # noqa: E402
from stagewise.models.recipes.demo.parity import llama_logits, torch_logits  # noqa: E402
from stagewise.models.recipes.demo.spec import MINI  # noqa: E402
from stagewise.models.recipes.demo.tokenizer import Tokenizer, build_vocabulary, prompt_parts  # noqa: E402
from stagewise.models.recipes.demo.train import TrainSettings, train  # noqa: E402
from stagewise.models.stages import STAGES, Stage  # noqa: E402


@pytest.fixture(scope="module")
def puzzles():
    return generate_split("train", 60, seed=3)


@pytest.fixture(scope="module")
def tokenizer(puzzles):
    vocab = build_vocabulary([t for p in puzzles for t in (p.question, answer_text(p))], 300)
    tok = Tokenizer(vocab)
    yield tok
    tok.close()


@pytest.fixture(scope="module")
def images(puzzles):
    size = (MINI.image_size, MINI.image_size)
    return np.stack([np.asarray(draw(p.scene).resize(size)) for p in puzzles])


def test_stage_tags_and_chat_tokens_are_single_tokens(tokenizer):
    for tag in (*STAGE_TAGS, "<|im_start|>", "<|im_end|>"):
        ids = tokenizer.encode(tag)
        assert len(ids) == 1, tag
        assert tokenizer.decode(ids) == tag


def test_answer_example_is_the_prompt_the_engine_renders(tokenizer, puzzles):
    builder = ExampleBuilder(tokenizer, MINI.n_patches)
    puzzle = puzzles[0]
    example = builder.answer(puzzle, 0)
    parts = prompt_parts(puzzle.question)
    assert parts.before == "<|im_start|>user\n"
    assert parts.after == f"\n{puzzle.question}<|im_end|>\n<|im_start|>assistant\n"
    ids = example.ids.tolist()
    image_end = builder.image_at + MINI.n_patches
    assert tokenizer.decode(ids[: builder.image_at]) == parts.before
    assert tokenizer.decode(ids[image_end : example.loss_from]) == parts.after
    assert tokenizer.decode(ids[example.loss_from :]) == answer_text(puzzle) + "<|im_end|>"


def test_judge_examples_pick_the_right_candidate(tokenizer, puzzles):
    builder = ExampleBuilder(tokenizer, MINI.n_patches)
    rng = random.Random(0)
    for stage in (*STAGES, None):
        for puzzle in puzzles[:6]:
            example = builder.judge(puzzle, 0, stage, rng)
            choice, named = read_choice(tokenizer.decode(example.ids[example.loss_from : -1]))
            assert named  # the search reads verdicts as the reference does
            prompt = tokenizer.decode(example.ids[: example.loss_from])
            right = answer_text(puzzle) if stage is None else puzzle.stages[stage]
            first = prompt.split("Response 1: ")[1].split("\n\nResponse 2: ")[0]
            assert choice == (1 if first == right.strip() else 2), (stage, prompt)


def test_check_examples_answer_yes_only_for_the_right_reasoning(tokenizer, puzzles):
    builder = ExampleBuilder(tokenizer, MINI.n_patches)
    rng = random.Random(1)
    seen = set()
    for puzzle in puzzles[:20]:
        example = builder.check(puzzle, rng)
        assert example.image == -1
        reply = tokenizer.decode(example.ids[example.loss_from : -1])
        right = f"Reasoning: {puzzle.stages[Stage.REASONING]}\n" in tokenizer.decode(example.ids)
        assert reply == ("Yes" if right else "No")
        seen.add(reply)
    assert seen == {"Yes", "No"}


def test_training_lowers_the_loss_and_resumes(tmp_path, tokenizer, puzzles, images, capsys):
    builder = ExampleBuilder(tokenizer, MINI.n_patches)
    examples = build_examples(builder, puzzles, judge_share=0.2, check_share=0.1)
    torch.manual_seed(0)
    model = DemoModel(MINI, len(tokenizer.vocab.tokens))
    settings = TrainSettings(steps=6, batch=8, lr=3e-3, warmup=2, save_every=3)
    kwargs = {"image_at": builder.image_at, "pad_id": tokenizer.eos,
              "val": (examples[:16], images)}
    first = train(model, examples, images, tmp_path, settings, **kwargs)
    assert first["step"] == 6
    log = (tmp_path / "train-log.jsonl").read_text().splitlines()
    assert len(log) == 2
    lines: list[str] = []
    again = DemoModel(MINI, len(tokenizer.vocab.tokens))
    longer = TrainSettings(steps=30, batch=8, lr=3e-3, warmup=2, save_every=3)
    last = train(again, examples, images, tmp_path, longer, log=lines.append, **kwargs)
    assert lines[0].startswith("resuming at step 6")
    assert last["step"] == 30
    assert last["val_loss"] < first["val_loss"] - 0.5


def test_exported_pair_matches_pytorch_through_llama_cpp(tmp_path, tokenizer, puzzles, images):
    torch.manual_seed(1)
    model = DemoModel(MINI, len(tokenizer.vocab.tokens))
    with torch.no_grad():  # weights well away from their init, so the graph shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.eval()
    pair = export_pair(model, tokenizer.vocab, tmp_path)
    for path, tolerance in ((pair.f16_model, 0.01), (pair.model, 0.05)):
        ll = llama_logits(path, pair.mmproj, images[0], puzzles[0].question)
        assert ll.n_image == MINI.n_patches
        expected = torch_logits(model, images[0], ll)
        spread = float(expected.max() - expected.min())
        assert spread > 0.5
        assert np.abs(ll.logits - expected).max() < tolerance * spread, path.name
        assert ll.logits.argmax() == expected.argmax()
    # the GGUF pair reads back into the same PyTorch model
    back = load_pair(pair.f16_model, pair.mmproj)
    for key, value in model.state_dict().items():
        assert torch.allclose(back.state_dict()[key], value, atol=2e-3), key


def test_parity_would_catch_a_wrong_graph(tmp_path, tokenizer, puzzles, images):
    """Running all vision blocks (llama.cpp runs block_count - 1) must show as a mismatch."""
    torch.manual_seed(2)
    model = DemoModel(MINI, len(tokenizer.vocab.tokens))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.eval()
    pair = export_pair(model, tokenizer.vocab, tmp_path)
    ll = llama_logits(pair.f16_model, pair.mmproj, images[0], puzzles[0].question)
    wrong = DemoModel(MINI, len(tokenizer.vocab.tokens)).eval()
    wrong.load_state_dict(model.state_dict())
    with torch.no_grad():  # pretend the zero block llama.cpp skips were a real one
        wrong.vision.blocks[-1].down.bias.add_(1.0)
    expected = torch_logits(wrong, images[0], ll)
    assert np.abs(ll.logits - expected).max() > 0.05 * float(expected.max() - expected.min())


def test_batches_weigh_verdicts_above_answer_tokens(tokenizer, puzzles, images):
    from stagewise.models.recipes.demo.train import IGNORE, make_batch

    builder = ExampleBuilder(tokenizer, MINI.n_patches)
    answer = builder.answer(puzzles[0], 0)
    verdict = builder.judge(puzzles[1], 1, Stage.CONCLUSION, random.Random(0))
    check = builder.check(puzzles[2], random.Random(0))
    model = DemoModel(MINI, len(tokenizer.vocab.tokens))
    batch = make_batch([answer, verdict, check], images, model, tokenizer.eos, 8.0)
    for row, example, weight in ((0, answer, 1.0), (1, verdict, 8.0), (2, check, 8.0)):
        scored = batch.targets[row] != IGNORE
        assert int(scored.sum()) == len(example.ids) - example.loss_from
        assert set(batch.weights[row][scored].tolist()) == {weight}
        assert float(batch.weights[row][~scored].abs().sum()) == 0.0
    assert batch.has_image.tolist() == [True, True, False]


def test_the_vision_warm_up_learns_what_is_in_each_cell(puzzles, images):
    """One patch a cell at the demo's sizes; here 16-pixel patches on 48-pixel pictures."""
    from stagewise.models.recipes.demo.cells import EMPTY, CellHead, cell_classes
    from stagewise.models.recipes.demo.model import normalise
    from stagewise.models.recipes.demo.train import warm_up_vision

    cells = np.stack([cell_classes(p.scene) for p in puzzles])
    for p, row in zip(puzzles, cells, strict=True):
        assert (row != EMPTY).sum() == len(p.scene.objects)
    torch.manual_seed(0)
    model = DemoModel(MINI, 300)
    head = CellHead(MINI.text.n_embd)
    with torch.no_grad():
        before = head.accuracy(model.vision(normalise(images, MINI)), torch.from_numpy(cells))
    lines: list[str] = []
    settings = TrainSettings(vision_steps=150, vision_batch=32, lr=3e-3)
    after = warm_up_vision(model, head, images, cells, settings, lines.append)
    empty_share = float((cells == EMPTY).mean())  # what always answering "empty" scores
    assert after > max(before, empty_share) + 0.1, (before, after, empty_share)
    assert lines[-1].startswith("vision warm-up 150/150")


def test_training_with_cells_warms_up_once_and_keeps_the_cell_loss(tmp_path, tokenizer,
                                                                    puzzles, images):
    from stagewise.models.recipes.demo.cells import cell_classes

    builder = ExampleBuilder(tokenizer, MINI.n_patches)
    examples = build_examples(builder, puzzles, judge_share=0.2, check_share=0.1)
    cells = np.stack([cell_classes(p.scene) for p in puzzles])
    settings = TrainSettings(steps=4, batch=8, warmup=2, save_every=2, vision_steps=20)
    kwargs = {"image_at": builder.image_at, "pad_id": tokenizer.eos, "cells": cells}
    lines: list[str] = []
    train(DemoModel(MINI, len(tokenizer.vocab.tokens)), examples, images, tmp_path, settings,
          log=lines.append, **kwargs)
    assert sum(line.startswith("vision warm-up") for line in lines) == 1  # at step 20 only
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["warmed"] and "head" in state
    again: list[str] = []
    longer = TrainSettings(steps=6, batch=8, warmup=2, save_every=2, vision_steps=20)
    train(DemoModel(MINI, len(tokenizer.vocab.tokens)), examples, images, tmp_path, longer,
          log=again.append, **kwargs)
    assert again[0].startswith("resuming at step 4")
    assert not any(line.startswith("vision warm-up") for line in again)


def test_follow_up_example_is_the_multi_turn_prompt_the_window_sends(tokenizer, puzzles,
                                                                     images):
    """The first question, its conclusion (what goes back in), then the follow-up; the loss
    on the follow-up's answer only, weighed as an answer's tokens."""
    from stagewise.models.build.puzzles import follow_up, follow_up_text
    from stagewise.models.recipes.demo.train import IGNORE, make_batch

    builder = ExampleBuilder(tokenizer, MINI.n_patches)
    rng = random.Random(4)
    for puzzle in puzzles[:8]:
        follow = follow_up(puzzle, rng)
        example = builder.follow(puzzle, 0, follow)
        assert example.kind == "follow" and example.image == 0
        ids = example.ids.tolist()
        image_end = builder.image_at + MINI.n_patches
        assert tokenizer.decode(ids[: builder.image_at]) == "<|im_start|>user\n"
        assert tokenizer.decode(ids[image_end : example.loss_from]) == (
            f"\n{puzzle.question}<|im_end|>\n<|im_start|>assistant\n{puzzle.answer}<|im_end|>\n"
            f"<|im_start|>user\n{follow.question}<|im_end|>\n<|im_start|>assistant\n")
        assert tokenizer.decode(ids[example.loss_from :]) == follow_up_text(follow) + "<|im_end|>"
    batch = make_batch([example], images, DemoModel(MINI, len(tokenizer.vocab.tokens)),
                       tokenizer.eos, 8.0)
    assert set(batch.weights[0][batch.targets[0] != IGNORE].tolist()) == {1.0}


def test_follow_up_examples_come_at_their_share_with_every_kind(tokenizer):
    from stagewise.models.build.puzzles import FOLLOW_UP_KINDS

    many = generate_split("train", 300, seed=9)
    builder = ExampleBuilder(tokenizer, MINI.n_patches)
    none = build_examples(builder, many, judge_share=0.0, check_share=0.0)
    some = build_examples(builder, many, judge_share=0.0, check_share=0.0, follow_share=0.3)
    assert all(e.kind == "answer" for e in none)
    follows = [e for e in some if e.kind == "follow"]
    assert 0.2 * len(many) < len(follows) < 0.6 * len(many)
    texts = [tokenizer.decode(e.ids[: e.loss_from]) for e in follows]
    asked = {"why": "user\nWhy?<|im_end|>", "remove": "if one is removed?<|im_end|>",
             "and": "user\nAnd the "}
    assert set(asked) == set(FOLLOW_UP_KINDS)
    for kind, mark in asked.items():
        assert sum(mark in t for t in texts) >= 0.05 * len(follows), kind


def test_a_cpu_budget_fixes_the_step_count_and_keeps_it_on_resuming(tmp_path, tokenizer,
                                                                    puzzles, images):
    builder = ExampleBuilder(tokenizer, MINI.n_patches)
    examples = build_examples(builder, puzzles, judge_share=0.2)
    settings = TrainSettings(steps=10_000, batch=2, warmup=2, save_every=5, threads=1,
                             cpu_minutes=0.1, calibration_steps=5)
    kwargs = {"image_at": builder.image_at, "pad_id": tokenizer.eos}
    lines: list[str] = []

    def stop_after_the_first_report(line: str) -> None:
        lines.append(line)
        if line.startswith("step "):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(DemoModel(MINI, len(tokenizer.vocab.tokens)), examples, images, tmp_path,
              settings, log=stop_after_the_first_report, **kwargs)
    (calibration,) = [line for line in lines if "CPU s a step" in line]
    per_step = float(calibration.split()[0])
    spent = float(calibration.split("(")[1].split()[0]) * 60
    total = int(calibration.split(": ")[1].split()[0])
    assert 5 < total < 10_000
    # the steps left fill the budget, less validation's part and what was spent
    assert (total - 5) * per_step == pytest.approx(0.1 * 60 * 0.96 - spent, rel=0.05,
                                                   abs=2 * per_step)
    assert re.search(r"step 5/\d+ .* CPU min, about \d+ CPU min \(\d+ min at this pace\) left",
                     lines[-2]), lines
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["step"] == 5 and state["total"] == total and state["cpu_seconds"] > 0
    again: list[str] = []
    record = train(DemoModel(MINI, len(tokenizer.vocab.tokens)), examples, images, tmp_path,
                   settings, log=again.append, **kwargs)
    assert record["step"] == total and "CPU min" in again[0]
    assert not any("CPU s a step" in line for line in again)
    assert again[-1].endswith("done")
