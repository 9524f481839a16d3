"""LoRA training on the tiny Qwen2.5-VL: resuming, refusing a changed run, skipping bad
samples, and answer-only labels."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pytest

from stagewise.models.build.puzzles import answer_text, draw, generate_split
from stagewise.models.errors import StagewiseError
from stagewise.models.recipes.llava_cot.inputs import IGNORE, load_prompt_builder
from stagewise.models.recipes.llava_cot.tiny_qwen import build_tiny_qwen25vl
from stagewise.models.recipes.llava_cot.train import TrainSettings, train


@dataclass(frozen=True)
class Sample:
    id: str
    image: str
    question: str
    answer: str
    follow_ups: tuple[tuple[str, str], ...] = ()


class Images:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def read(self, name: str) -> bytes:
        return self.files[name]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    puzzles = generate_split("train", 60, 1, set())
    texts = [t for p in puzzles for t in (p.question, answer_text(p))]
    return build_tiny_qwen25vl(tmp_path_factory.mktemp("base"), texts)


@pytest.fixture(scope="module")
def data() -> tuple[list[Sample], Images]:
    files, samples = {}, []
    for i, puzzle in enumerate(generate_split("train", 6, 2, set())):
        buffer = io.BytesIO()
        draw(puzzle.scene).save(buffer, "PNG")
        files[f"{i}.png"] = buffer.getvalue()
        samples.append(Sample(f"s{i}", f"{i}.png", puzzle.question, answer_text(puzzle)))
    return samples, Images(files)


SETTINGS = TrainSettings(steps=4, accumulate=2, lr=3e-3, save_every=1, dtype="fp32",
                         gradient_checkpointing=False)


def _adapter(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "adapter" / "adapter_model.safetensors")


def test_an_interrupted_run_resumes_where_it_stopped(base, data, tmp_path):
    import torch

    samples, images = data
    prompts = load_prompt_builder(base, "qwen-grid")
    straight = train(base, samples, images, tmp_path / "straight", prompts, SETTINGS)

    def stop_after_two(progress):
        if progress.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(base, samples, images, tmp_path / "resumed", prompts, SETTINGS,
              progress=stop_after_two)
    assert not (tmp_path / "resumed" / "adapter").exists()
    seen = []
    resumed = train(base, samples, images, tmp_path / "resumed", prompts, SETTINGS,
                    progress=seen.append)
    assert [p.step for p in seen] == [3, 4] and seen[0].resumed_from == 2
    assert resumed.losses == pytest.approx(straight.losses, abs=1e-5)
    a, b = _adapter(tmp_path / "straight"), _adapter(tmp_path / "resumed")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    kept = sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir())
    assert kept == ["step-0000003", "step-0000004"]  # keep=2


def test_a_changed_run_is_refused(base, data, tmp_path):
    samples, images = data
    prompts = load_prompt_builder(base, "qwen-grid")
    train(base, samples, images, tmp_path, prompts,
          TrainSettings(**{**SETTINGS.__dict__, "steps": 1}))
    changed = TrainSettings(**{**SETTINGS.__dict__, "steps": 2, "rank": 8})
    with pytest.raises(StagewiseError, match="rank 16 -> 8"):
        train(base, samples, images, tmp_path, prompts, changed)


def test_bad_samples_are_skipped_and_reported(base, data, tmp_path):
    samples, images = data
    broken = Images({**images.files, "0.png": b"not a png"})
    from PIL import Image

    prompts = load_prompt_builder(base, "qwen-grid")
    lengths = {}
    for sample in samples[1:]:
        with Image.open(io.BytesIO(images.read(sample.image))) as image:
            lengths[sample.id] = prompts.example(image, sample.question, sample.answer).n_tokens
    limit = sorted(lengths.values())[len(lengths) // 2]
    settings = TrainSettings(**{**SETTINGS.__dict__, "steps": 3, "max_tokens": limit})
    result = train(base, samples, broken, tmp_path, prompts, settings)
    assert result.skipped["s0"].startswith("image unreadable")
    too_long = {k for k, v in result.skipped.items() if v == f"longer than {limit} tokens"}
    assert too_long == {k for k, n in lengths.items() if n > limit}
    assert result.steps == 3
    with pytest.raises(StagewiseError, match="every sample was skipped"):
        train(base, samples, Images(dict.fromkeys(images.files, b"x")), tmp_path / "none",
              prompts, settings)


def test_loss_covers_the_answer_and_its_end_of_turn_only(base, data):
    samples, images = data
    from PIL import Image

    prompts = load_prompt_builder(base, "qwen-grid")
    with Image.open(io.BytesIO(images.read(samples[0].image))) as image:
        example = prompts.example(image, samples[0].question, samples[0].answer)
    ids, labels = example.inputs["input_ids"][0], example.labels[0]
    answer = labels[labels != IGNORE].tolist()
    decoded = prompts.tokenizer.decode(answer)
    assert decoded.startswith("<SUMMARY>") and decoded.rstrip().endswith("<|im_end|>")
    prompt = prompts.tokenizer.decode(ids[labels == IGNORE])
    assert prompt.endswith("<|im_start|>assistant\n")
    n_image = prompt.count("<|image_pad|>")
    grid = example.inputs["image_grid_thw"][0]
    assert n_image == int(grid.prod()) // 4 > 1


def test_pictures_are_downscaled_as_the_app_downscales_them(base):
    from PIL import Image

    picture = Image.new("RGB", (448, 336), "white")
    cap = 112 * 112
    capped = load_prompt_builder(base, "qwen-grid", max_pixels=cap).example(
        picture, "How many?", "<SUMMARY> a </SUMMARY>")
    full = load_prompt_builder(base, "qwen-grid").example(
        picture, "How many?", "<SUMMARY> a </SUMMARY>")
    patches = int(capped.inputs["image_grid_thw"][0].prod())
    assert patches * 14 * 14 <= 1.25 * cap  # the processor rounds sides to 28 px
    assert patches < int(full.inputs["image_grid_thw"][0].prod())


def test_a_conversation_trains_every_answer_and_no_question(base, data):
    from PIL import Image

    samples, images = data
    first, second = samples[0], samples[1]
    prompts = load_prompt_builder(base, "qwen-grid")
    with Image.open(io.BytesIO(images.read(first.image))) as image:
        single = prompts.example(image, first.question, first.answer)
        talk = prompts.example(image, first.question, first.answer,
                               ((second.question, second.answer),))
    ids, labels = talk.inputs["input_ids"][0], talk.labels[0]
    n = single.n_tokens
    assert ids[:n].tolist() == single.inputs["input_ids"][0].tolist()  # the first turn as alone
    assert labels[:n].tolist() == single.labels[0].tolist()
    trained = prompts.tokenizer.decode(labels[n:][labels[n:] != IGNORE])
    untrained = prompts.tokenizer.decode(ids[n:][labels[n:] == IGNORE])
    assert trained.startswith("<SUMMARY>") and "<|im_end|>" in trained
    assert second.question in untrained and "<SUMMARY>" not in untrained
    assert untrained.rstrip().endswith("<|im_start|>assistant")
    assert talk.inputs["mm_token_type_ids"].shape == talk.inputs["input_ids"].shape
    assert int(talk.inputs["mm_token_type_ids"].sum()) == int(
        single.inputs["mm_token_type_ids"].sum())  # one image, in the first turn
