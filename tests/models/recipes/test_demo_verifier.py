"""The demo verifier's recipe at a tiny size: its examples are the prompts the ``prm``
selection renders, its "+"/"-" are single tokens, and its GGUF pair computes PyTorch's
scores through llama.cpp."""

from __future__ import annotations

import io
import random
from collections import Counter

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from stagewise.models.build.puzzles import corrupt_with_fact, generate_split  # noqa: E402
from stagewise.models.inference.engine import Engine  # noqa: E402
from stagewise.models.inference.engine_settings import EngineSettings  # noqa: E402
from stagewise.models.inference.images import load_image  # noqa: E402
from stagewise.models.reasoning.prm_verifier import (  # noqa: E402
    BAD,
    GOOD,
    SYSTEM_KEY,
    PrmVerifier,
    step_turns,
)
from stagewise.models.recipes.demo.export import export_pair  # noqa: E402
from stagewise.models.recipes.demo.model import DemoModel, normalise  # noqa: E402
from stagewise.models.recipes.demo.parity import parity_report, pictures  # noqa: E402
from stagewise.models.recipes.demo.spec import MINI  # noqa: E402
from stagewise.models.recipes.demo.tokenizer import Tokenizer, build_vocabulary  # noqa: E402
from stagewise.models.recipes.demo.verifier import (  # noqa: E402
    VERIFIER_SYSTEM,
    StepExamples,
    balanced_accuracy,
    step_examples,
)
from stagewise.models.stages import STAGES, Stage  # noqa: E402


@pytest.fixture(scope="module")
def puzzles():
    return generate_split("train", 40, seed=5)


@pytest.fixture(scope="module")
def tokenizer(puzzles):
    rng = random.Random(0)
    texts = [VERIFIER_SYSTEM]
    for p in puzzles:
        texts += [u for u, _ in step_turns(p.question, list(p.stages.values()))]
        texts += [corrupt_with_fact(p, s, rng).wrong for s in STAGES]
    tok = Tokenizer(build_vocabulary(texts, 300))
    yield tok
    tok.close()


@pytest.fixture(scope="module")
def verifier_pair(tmp_path_factory, tokenizer):
    """A random-weight MINI verifier, written as the recipe writes the shipped one."""
    torch.manual_seed(3)
    model = DemoModel(MINI, len(tokenizer.vocab.tokens))
    with torch.no_grad():  # weights well away from their init, so the graph shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.eval()
    pair = export_pair(model, tokenizer.vocab, tmp_path_factory.mktemp("verifier"),
                       name="stagewise-demo-verifier",
                       metadata=[(SYSTEM_KEY, VERIFIER_SYSTEM)])
    return model, pair


def test_examples_end_in_one_plus_or_minus_for_each_stage_half_and_half(tokenizer, puzzles):
    builder = StepExamples(tokenizer, MINI.n_patches)
    examples = step_examples(builder, puzzles * 5, per_puzzle=2)
    labels = Counter((e.kind, int(e.ids[-1])) for e in examples)
    for stage in STAGES:
        good, bad = labels[(stage.value, builder.good)], labels[(stage.value, builder.bad)]
        assert good + bad > 50 and 0.3 < good / (good + bad) < 0.7, stage
    for e in examples[:20]:
        assert e.loss_from == len(e.ids) - 1  # the loss is on the label alone
        assert tokenizer.decode(e.ids[-1:]) in (GOOD, BAD)


def test_a_wrong_step_is_the_newest_turn_after_the_gold_ones(tokenizer, puzzles):
    builder = StepExamples(tokenizer, MINI.n_patches)
    puzzle = puzzles[1]
    right = builder.step(puzzle, 0, Stage.REASONING, True, random.Random(0))
    wrong = builder.step(puzzle, 0, Stage.REASONING, False, random.Random(0))
    text_right, text_wrong = (tokenizer.decode(e.ids[: e.loss_from]) for e in (right, wrong))
    assert text_right.startswith(f"<|im_start|>system\n{VERIFIER_SYSTEM}<|im_end|>\n")
    assert f"### Solution Process:\n{puzzle.stages[Stage.SUMMARY]}<|im_end|>" in text_right
    assert text_right.count("<|im_start|>assistant\n+<|im_end|>") == 2  # summary, caption
    assert puzzle.stages[Stage.REASONING] in text_right
    assert puzzle.stages[Stage.REASONING] not in text_wrong
    assert text_wrong.split("<|im_start|>user\n")[:-1] == text_right.split(
        "<|im_start|>user\n")[:-1]
    assert (tokenizer.decode(right.ids[-1:]), tokenizer.decode(wrong.ids[-1:])) == (GOOD, BAD)


def test_the_prm_selection_reads_the_exported_verifier_as_pytorch_scores_it(verifier_pair,
                                                                           tokenizer,
                                                                           puzzles):
    """Its system message from the GGUF, "+"/"-" single tokens, and the score the search
    reads (P("+") against P("-") after the newest step) the same as PyTorch's on the
    training example's own tokens."""
    model, pair = verifier_pair
    builder = StepExamples(tokenizer, MINI.n_patches)
    puzzle = puzzles[2]
    pixels = pictures([puzzle], MINI)
    buffer = io.BytesIO()
    Image.fromarray(pixels[0]).save(buffer, "PNG")
    with Engine(pair.f16_model, pair.mmproj, EngineSettings(n_ctx=2048, n_seq_max=2,
                                                            threads=1)) as engine:
        verifier = PrmVerifier(engine)
        assert verifier.system == VERIFIER_SYSTEM
        assert (verifier.good, verifier.bad) == (builder.good, builder.bad)
        verifier.start(load_image(buffer.getvalue()), puzzle.question)
        for stage, right in ((Stage.SUMMARY, True), (Stage.CAPTION, False),
                             (Stage.CONCLUSION, True)):
            example = builder.step(puzzle, 0, stage, right, random.Random(1))
            newest = (puzzle.stages[stage] if right
                      else corrupt_with_fact(puzzle, stage, random.Random(1)).wrong)
            earlier = STAGES[: STAGES.index(stage)]
            so_far = "\n\n".join(f"{s.open_tag}{puzzle.stages[s]}{s.close_tag}"
                                 for s in earlier)
            [score] = verifier.score(stage, so_far, [newest])
            with torch.no_grad():
                logits = model(torch.tensor([example.ids[: example.loss_from].tolist()]),
                               normalise(pixels, MINI), image_at=builder.image_at)[0, -1]
            good, bad = logits[builder.good].item(), logits[builder.bad].item()
            expected = 1 / (1 + np.exp(bad - good))
            assert score == pytest.approx(expected, abs=0.02), stage
        verifier.finish()


def test_the_verifier_pair_matches_pytorch_on_its_prompt(verifier_pair, puzzles):
    model, pair = verifier_pair
    puzzle = puzzles[3]
    turns = step_turns(puzzle.question, [puzzle.stages[s] for s in STAGES])
    report = parity_report(model, (("f16", pair.f16_model), ("quantized", pair.model)),
                           pair.mmproj, pictures([puzzle], MINI)[0], turns[-1][0],
                           earlier=turns[:-1], system=VERIFIER_SYSTEM)
    for label, tolerance in (("f16", 0.01), ("quantized", 0.05)):
        row = report[label]
        assert row["logit_range"] > 0.5 and row["same_argmax"], label
        assert row["max_abs_diff"] < tolerance * row["logit_range"], label


def test_balanced_accuracy_is_the_mean_of_both_classes(tokenizer, puzzles):
    """A model that always says "+" is right on every right step and no wrong one: 50%."""
    builder = StepExamples(tokenizer, MINI.n_patches)
    examples = step_examples(builder, puzzles, per_puzzle=4)
    model = DemoModel(MINI, len(tokenizer.vocab.tokens)).eval()
    with torch.no_grad():
        model.output.weight.zero_()
        model.output.weight[builder.good] += 1.0  # "+" outscores "-" everywhere
    accuracy = balanced_accuracy(model, examples, pictures(puzzles, MINI), builder)
    assert accuracy == {stage.value: 0.5 for stage in STAGES}


def test_the_gold_steps_are_also_predicted_never_a_wrong_one(tokenizer, puzzles):
    from stagewise.models.recipes.demo.train import IGNORE, make_batch

    builder = StepExamples(tokenizer, MINI.n_patches)
    puzzle = puzzles[4]
    right = builder.step(puzzle, 0, Stage.CONCLUSION, True, random.Random(2))
    wrong = builder.step(puzzle, 0, Stage.CAPTION, False, random.Random(2))
    assert [tokenizer.decode(right.ids[a:b]) for a, b in right.aux] == [
        puzzle.stages[s] for s in STAGES]
    assert [tokenizer.decode(wrong.ids[a:b]) for a, b in wrong.aux] == [
        puzzle.stages[Stage.SUMMARY]]
    model = DemoModel(MINI, len(tokenizer.vocab.tokens))
    pixels = pictures([puzzle], MINI)
    batch = make_batch([wrong], pixels, model, tokenizer.eos, aux_weight=0.05)
    scored = batch.targets[0] != IGNORE
    (start, end), = wrong.aux
    assert int(scored.sum()) == (end - start) + 1  # the summary's tokens and the label
    assert sorted(set(batch.weights[0][scored].tolist())) == pytest.approx([0.05, 1.0])
    plain = make_batch([wrong], pixels, model, tokenizer.eos)  # no aux weight: label alone
    assert int((plain.targets[0] != IGNORE).sum()) == 1
