"""The LLaVA-CoT recipe on a Qwen3-VL base, on CPU: a tiny random Qwen3-VL (deepstack,
interleaved M-RoPE, 16-pixel patches, Qwen3-VL-Instruct's template) fine-tuned for two
steps on synthetic samples, merged, converted with llama.cpp's own converter, quantized,
registered, and loaded through libmtmd.

The run is one module fixture (the recipe's command line, step by step, with
``--base qwen3-vl-4b --base-dir TINY``); the tests read what it left behind. It registers
into a library folder of its own, so the Qwen2.5-VL run's registration is not touched.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from stagewise.models.disk.paths import DATA_DIR_ENV
from stagewise.models.events import AnswerFinished
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.gguf_header import inspect_gguf
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.library.installed import Library
from stagewise.models.reasoning.llama_backend import LlamaBackend
from stagewise.models.reasoning.search import SearchSettings, StageSearch
from stagewise.models.recipes.llava_cot.__main__ import main
from stagewise.models.recipes.llava_cot.workdir import Workdir
from stagewise.models.stages import STAGES, user_text
from tests.models.recipes.llava_cot_parity import (
    assert_same_logits,
    llama_image_prompt_logits,
    llama_text_logits,
    training_prompt_inputs,
    transformers_logits,
)

SAMPLES = 12
STEPS = 2
QUESTION = "How many red circles are there?"
IMAGE_TRIPLE = "<|vision_start|><|image_pad|><|vision_end|>"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Workdir]]:
    root = tmp_path_factory.mktemp("qwen3vl")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["tiny", str(root), "--base", "qwen3-vl-4b", "--samples", str(SAMPLES)]
                    ) == 0
    base = root / "tiny-base"
    jsonl = root / "synthetic-data" / "train.jsonl"
    first_part = root / "synthetic-data" / "image.zip.part-aa"
    wd = Workdir(root / "work")
    base_args = ["--base", "qwen3-vl-4b", "--base-dir", str(base)]
    steps = [
        ("data", ["--jsonl", str(jsonl), "--images", str(first_part), "--val-size", "4"]),
        ("train", [*base_args, "--steps", str(STEPS), "--accumulate", "2", "--lr", "3e-3",
                   "--yes"]),
        ("merge", base_args),
        ("convert", ["--pre-tokenizer", "qwen2"]),
        ("quantize", ["--quant", "Q4_K_M"]),
        ("register", []),
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATA_DIR_ENV, str(root / "library"))
        with contextlib.redirect_stdout(io.StringIO()):
            for step, extra in steps:
                assert main([step, str(wd.root), *extra]) == 0, step
        yield base, wd


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """128x96 pixels: a whole number of 32-pixel merged patches (4x3), inside both
    transformers' and libmtmd's pixel ranges, so that neither resizes it."""
    from PIL import Image, ImageDraw

    path = tmp_path_factory.mktemp("qwen3vl-image") / "shapes.png"
    image = Image.new("RGB", (128, 96), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((8, 8, 40, 40), fill="red")
    draw.rectangle((60, 30, 120, 90), fill="blue")
    image.save(path)
    return path


def test_training_ran_on_the_qwen3vl_base(run):
    import json

    base, wd = run
    record = wd.record()
    assert record["base"]["key"] == "qwen3-vl-4b"
    assert record["training"]["steps"] == STEPS
    training = json.loads((wd.adapter / "training.json").read_text())
    assert len(training["losses"]) == STEPS and not training["skipped"]
    merged = json.loads((wd.merged / "config.json").read_text())
    assert merged["architectures"] == ["Qwen3VLForConditionalGeneration"]
    assert (wd.merged / "chat_template.jinja").read_text() == \
        (base / "chat_template.jinja").read_text()


def test_merge_changes_the_language_model_only(run):
    from safetensors import safe_open

    base, wd = run
    before = safe_open(str(base / "model.safetensors"), "pt")
    after = safe_open(str(wd.merged / "model.safetensors"), "pt")
    assert sorted(before.keys()) == sorted(after.keys())
    changed = {k for k in before.keys()  # noqa: SIM118 (safe_open is not a dict)
               if not np.array_equal(before.get_tensor(k).float().numpy(),
                                     after.get_tensor(k).float().numpy())}
    assert changed, "the adapter changed nothing"
    assert all(k.startswith("model.language_model.") and k.endswith("_proj.weight")
               for k in changed), changed


def test_converted_files_are_qwen3vl(run):
    import llama_cpp

    _, wd = run
    text = inspect_gguf(wd.text_f16)
    assert text.architecture == "qwen3vl"
    assert text.metadata["tokenizer.ggml.pre"] == "qwen2"
    assert text.metadata["stagewise.stage_mode"] == "native"
    assert text.metadata["qwen3vl.rope.dimension_sections"][:3] == [12, 10, 10]
    assert text.metadata["qwen3vl.n_deepstack_layers"] == 2
    mmproj = inspect_gguf(wd.mmproj)
    assert mmproj.metadata["clip.projector_type"] == "qwen3vl_merger"
    assert mmproj.metadata["clip.vision.patch_size"] == 16
    assert mmproj.metadata["clip.vision.is_deepstack_layers"] == [False, True, True, False]
    assert mmproj.metadata["clip.vision.image_mean"] == [0.5, 0.5, 0.5]
    assert {t for _, t in mmproj.tensors.values()} <= {"F16", "F32"}
    q4 = inspect_gguf(wd.quantized("Q4_K_M"))
    assert q4.metadata["general.file_type"] == llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    assert "Q4_K" in {t for _, t in q4.tensors.values()}


def test_llama_cpp_computes_what_transformers_computes(run):
    """The F16 GGUF against the merged model in PyTorch, on a text prompt: the same
    next-token logits (up to F16 rounding), so the converter mapped every tensor right."""
    import torch
    from transformers import AutoTokenizer

    _, wd = run
    tokenizer = AutoTokenizer.from_pretrained(wd.merged)
    ids = tokenizer("<SUMMARY> The question asks how many red circles", add_special_tokens=False
                    )["input_ids"]
    expected = transformers_logits(wd.merged, {"input_ids": torch.tensor([ids])})
    assert_same_logits(llama_text_logits(wd, ids), expected, 0.02)


def test_the_trained_image_prompt_is_what_llama_cpp_computes(run, picture):
    """The training inputs of an image prompt (tokens, pixels, M-RoPE positions from
    ``mm_token_type_ids``) give transformers the logits libmtmd and llama.cpp give for the
    app's prompt with that image: vision tower, deepstack and positions agree.

    Numbering the image tokens like text instead moves the logits by about 3% of their
    spread here, well past the 1% allowed."""
    _, wd = run
    inputs = training_prompt_inputs(wd, "qwen-grid", picture, QUESTION)
    assert inputs["image_grid_thw"].tolist() == [[1, 6, 8]]  # 96/16 by 128/16
    got, image_tokens = llama_image_prompt_logits(wd, picture, QUESTION)
    assert image_tokens == [12]  # 3x4 merged patches, as transformers makes
    assert_same_logits(got, transformers_logits(wd.merged, inputs), 0.01)


def test_the_engine_runs_a_stage_beam_search_on_it(run, image):
    installed = Library().get("llava-cot-local")
    assert installed.present
    assert installed.model.name == "llava-cot-local-Q4_K_M.gguf"
    with Engine(installed.model, installed.mmproj,
                EngineSettings(n_ctx=4096, n_seq_max=5)) as engine:
        assert engine.family == "qwen3-vl"
        assert engine.uses_mrope
        assert engine.stage_mode is StageMode.NATIVE
        search = StageSearch(LlamaBackend(engine),
                             SearchSettings(beam=2, max_stage_tokens=10, seed=1))
        events = list(search.run(image, QUESTION))
        assert engine.stats.image_encodes == 1
    result = events[-1].result
    assert isinstance(events[-1], AnswerFinished) and result.status == "finished"
    assert len(result.chosen) == len(STAGES)


def test_training_prompt_is_the_prompt_the_app_gives(run, image_file):
    """The model learns to answer the prompt the app will send it: Qwen3-VL's template
    (no default system turn), the image first, then the question, with no instruction."""
    from PIL import Image

    from stagewise.models.recipes.llava_cot.inputs import IGNORE, load_prompt_builder

    _, wd = run
    prompts = load_prompt_builder(wd.merged, "qwen-grid")
    with Image.open(image_file) as picture:
        example = prompts.example(picture, QUESTION, "<SUMMARY> x </SUMMARY>")
    ids = example.inputs["input_ids"][0][example.labels[0] == IGNORE]
    trained = prompts.tokenizer.decode(ids)
    while "<|image_pad|><|image_pad|>" in trained:
        trained = trained.replace("<|image_pad|><|image_pad|>", "<|image_pad|>")
    assert trained.startswith("<|im_start|>user\n" + IMAGE_TRIPLE)  # no system turn
    with Engine(wd.text_f16, wd.mmproj, EngineSettings(n_ctx=512, n_seq_max=1)) as engine:
        app = engine.chat_prompt(user_text(QUESTION, engine.stage_mode))
        marker = engine.media_marker
    assert app.replace(marker, IMAGE_TRIPLE) == trained
