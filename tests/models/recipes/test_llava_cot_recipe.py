"""The LLaVA-CoT recipe end to end on CPU: a tiny random Qwen2.5-VL fine-tuned on synthetic
samples in LLaVA-CoT-100k's layout, merged, converted with llama.cpp's own converter,
quantized, registered, loaded through libmtmd and searched stage by stage.

The run itself is one module fixture (``python -m stagewise.models.recipes.llava_cot all``, as a
user types it); the tests read what it left behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stagewise.models.events import AnswerFinished
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.gguf_header import inspect_gguf
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.library.installed import Library
from stagewise.models.reasoning.llama_backend import LlamaBackend
from stagewise.models.reasoning.search import SearchSettings, StageSearch
from stagewise.models.recipes.llava_cot.__main__ import main
from stagewise.models.recipes.llava_cot.data import LICENCE_NOTICE
from stagewise.models.recipes.llava_cot.synthetic import MALFORMED
from stagewise.models.recipes.llava_cot.workdir import Workdir
from stagewise.models.stages import STAGES
from tests.models.recipes.llava_cot_parity import (
    assert_same_logits,
    llama_image_prompt_logits,
    llama_text_logits,
    training_prompt_inputs,
    transformers_logits,
)

SAMPLES = 16
STEPS = 6


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Workdir, str]:
    inputs = tmp_path_factory.mktemp("tiny")
    assert main(["tiny", str(inputs), "--samples", str(SAMPLES)]) == 0
    wd = Workdir(tmp_path_factory.mktemp("work"))
    data = inputs / "synthetic-data"
    args = ["all", str(wd.root), "--jsonl", str(data / "train.jsonl"),
            "--images", str(data / "image.zip.part-aa"), "--val-size", "4",
            "--base-dir", str(inputs / "tiny-base"), "--steps", str(STEPS), "--accumulate", "2",
            "--lr", "3e-3", "--save-every", "4", "--pre-tokenizer", "qwen2",
            "--limit", "2", "--beam", "2", "--max-stage-tokens", "12", "--ctx", "4096"]
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(args) == 0
    return inputs, wd, out.getvalue()


def test_data_step_drops_and_counts_the_bad_samples(run):
    _, wd, printed = run
    data = wd.record()["data"]
    assert data["dropped"] == MALFORMED
    assert (data["train"], data["val"]) == (SAMPLES - 4, 4)
    assert LICENCE_NOTICE in printed


def test_training_lowers_the_loss_and_leaves_an_adapter(run):
    _, wd, printed = run
    training = json.loads((wd.adapter / "training.json").read_text())
    assert training["steps"] == STEPS
    assert training["losses"][-1] < training["losses"][0] - 0.2
    assert (wd.adapter / "adapter_model.safetensors").is_file()
    assert f"step {STEPS}/{STEPS}" in printed
    assert "min left" in printed


def test_merge_changes_the_language_model_only(run):
    from safetensors import safe_open

    inputs, wd, _ = run
    base = safe_open(str(inputs / "tiny-base" / "model.safetensors"), "pt")
    merged = safe_open(str(wd.merged / "model.safetensors"), "pt")
    assert sorted(base.keys()) == sorted(merged.keys())
    changed = {k for k in base.keys()  # noqa: SIM118 (safe_open is not a dict)
               if not np.array_equal(base.get_tensor(k).float().numpy(),
                                     merged.get_tensor(k).float().numpy())}
    assert changed, "the adapter changed nothing"
    assert all(k.endswith("_proj.weight") and "visual" not in k for k in changed), changed
    assert (wd.merged / "chat_template.jinja").is_file()
    assert (wd.merged / "preprocessor_config.json").is_file()


def test_converted_and_quantized_files(run):
    import llama_cpp

    _, wd, _ = run
    text = inspect_gguf(wd.text_f16)
    assert text.architecture == "qwen2vl"
    assert text.metadata["tokenizer.ggml.pre"] == "qwen2"
    assert text.metadata["stagewise.stage_mode"] == "native"
    assert text.metadata["qwen2vl.rope.dimension_sections"][:3] == [8, 12, 12]
    mmproj = inspect_gguf(wd.mmproj)
    assert mmproj.metadata["clip.projector_type"] == "qwen2.5vl_merger"
    assert {t for _, t in mmproj.tensors.values()} <= {"F16", "F32"}
    q4 = inspect_gguf(wd.quantized("Q4_K_M"))
    assert q4.metadata["general.file_type"] == llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    assert "Q4_K" in {t for _, t in q4.tensors.values()}
    q8 = inspect_gguf(wd.quantized("Q8_0"))
    assert q8.metadata["general.file_type"] == llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    assert wd.quantized("Q4_K_M").stat().st_size < wd.quantized("Q8_0").stat().st_size


def test_llama_cpp_computes_what_transformers_computes(run):
    """The F16 GGUF against the merged model in PyTorch, on a text prompt: the same
    next-token logits (up to F16 rounding), so the converter mapped every tensor right."""
    import torch
    from transformers import AutoTokenizer

    _, wd, _ = run
    tokenizer = AutoTokenizer.from_pretrained(wd.merged)
    ids = tokenizer("<SUMMARY> The question asks how many red circles", add_special_tokens=False
                    )["input_ids"]
    expected = transformers_logits(wd.merged, {"input_ids": torch.tensor([ids])})
    assert_same_logits(llama_text_logits(wd, ids), expected, 0.02)


def test_the_trained_image_prompt_is_what_llama_cpp_computes(run, tmp_path):
    """The training inputs of an image prompt (tokens, pixels, and the M-RoPE positions
    transformers derives from ``mm_token_type_ids``) give the logits libmtmd and llama.cpp
    give for the app's prompt with that picture: the vision tower, the merger and the
    image tokens' positions agree. Measured: 0.02% of the logits' spread apart; without
    ``mm_token_type_ids`` transformers numbers the image tokens like text and lands 0.13%
    away (the tiny random model's logits are nearly flat), so the tolerance is 0.06%."""
    from PIL import Image, ImageDraw

    _, wd, _ = run
    picture = tmp_path / "shapes.png"  # 112x84: whole 28-pixel merged patches, no resizing
    image = Image.new("RGB", (112, 84), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((8, 8, 40, 40), fill="red")
    draw.rectangle((56, 28, 104, 76), fill="blue")
    image.save(picture)
    question = "How many red circles are there?"
    inputs = training_prompt_inputs(wd, "qwen-grid", picture, question)
    assert inputs["image_grid_thw"].tolist() == [[1, 6, 8]]
    got, image_tokens = llama_image_prompt_logits(wd, picture, question)
    assert image_tokens == [12]  # 3x4 merged patches, as transformers makes
    assert_same_logits(got, transformers_logits(wd.merged, inputs), 0.0006)


def test_registered_with_a_model_card(run):
    installed = Library().get("llava-cot-local")
    assert installed.present and installed.source == "catalogue"
    assert installed.model.name == "llava-cot-local-Q4_K_M.gguf"
    card = json.loads((installed.model.parent / "card.json").read_text())
    assert card["base"].endswith("tiny-base")
    assert card["quant"] == "Q4_K_M" and card["recipe_version"] == "1"
    assert card["training"]["steps"] == STEPS
    assert set(card["files"]) == {installed.model.name, installed.mmproj.name}
    assert LICENCE_NOTICE in (installed.model.parent / "MODEL_CARD.md").read_text()


def test_the_engine_runs_a_stage_beam_search_on_it(run, image):
    installed = Library().get("llava-cot-local")
    with Engine(installed.model, installed.mmproj,
                EngineSettings(n_ctx=4096, n_seq_max=5)) as engine:
        assert engine.family == "qwen2.5-vl"
        assert engine.uses_mrope
        assert engine.stage_mode is StageMode.NATIVE
        search = StageSearch(LlamaBackend(engine),
                             SearchSettings(beam=2, max_stage_tokens=10, seed=1,
                                                select="judge"))
        events = list(search.run(image, "How many red circles are there?"))
        assert engine.stats.image_encodes == 1
    result = events[-1].result
    assert isinstance(events[-1], AnswerFinished) and result.status == "finished"
    assert len(result.chosen) == len(STAGES)
    for stage in STAGES:
        assert len([c for c in result.candidates if c.unit is stage]) == 2
    assert len(result.verdicts) == len(STAGES)  # one judge call per stage at beam 2


def test_evaluation_compares_single_pass_and_stage_search(run):
    _, wd, printed = run
    report = json.loads(wd.eval_json.read_text())
    names = [s["strategy"] for s in report["strategies"]]
    assert names == ["single", "stage"]
    assert all(s["n"] == 2 for s in report["strategies"])
    assert "stage vs single" in printed


def test_stagewise_eval_reads_the_held_out_slice(run, capsys):
    from stagewise.desktop.cli import main as stagewise

    _, wd, _ = run
    code = stagewise(["eval", str(wd.val), "--model", "llava-cot-local", "--limit", "1",
                      "--strategy", "single", "--max-stage-tokens", "8", "--ctx", "2048",
                      "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["strategies"][0]["n"] == 1


def test_training_prompt_is_the_prompt_the_app_gives(run, image_file):
    """The model learns to answer the prompt the app will send it: the same template,
    system turn, image place and question, with no instruction (native mode)."""
    from PIL import Image

    from stagewise.models.recipes.llava_cot.inputs import IGNORE, load_prompt_builder
    from stagewise.models.stages import user_text

    _, wd, _ = run
    question = "How many red circles are there?"
    prompts = load_prompt_builder(wd.merged, "qwen-grid")
    with Image.open(image_file) as picture:
        example = prompts.example(picture, question, "<SUMMARY> x </SUMMARY>")
    ids = example.inputs["input_ids"][0][example.labels[0] == IGNORE]
    trained = prompts.tokenizer.decode(ids)
    while "<|image_pad|><|image_pad|>" in trained:
        trained = trained.replace("<|image_pad|><|image_pad|>", "<|image_pad|>")
    with Engine(wd.text_f16, wd.mmproj, EngineSettings(n_ctx=512, n_seq_max=1)) as engine:
        app = engine.chat_prompt(user_text(question, engine.stage_mode))
        marker = engine.media_marker
    assert app.replace(marker, "<|vision_start|><|image_pad|><|vision_end|>") == trained


def test_steps_out_of_order_and_missing_inputs_say_what_to_do(tmp_path, capsys):
    assert main(["merge", str(tmp_path / "w"), "--base-dir", str(tmp_path)]) == 1
    assert "run the 'train' step first" in capsys.readouterr().err
    assert main(["data", str(tmp_path / "w")]) == 1
    assert "needs --jsonl and --images" in capsys.readouterr().err
    assert main(["quantize", str(tmp_path / "w")]) == 1
    assert "run the 'convert' step first" in capsys.readouterr().err


def test_an_unwritable_folder_is_one_clear_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = blocker / "work"  # a folder inside a file cannot be made
    code = main(["quantize", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


@pytest.mark.parametrize(("base", "model_type"), [("qwen3-vl-4b", "qwen3_vl"),
                                                  ("gemma-3-4b", "gemma3")])
def test_tiny_imitates_the_base_asked_for(base, model_type, tmp_path):
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["tiny", str(tmp_path), "--base", base, "--samples", "2"]) == 0
    config = json.loads((tmp_path / "tiny-base" / "config.json").read_text())
    assert config["model_type"] == model_type


def test_a_folder_trained_from_one_base_refuses_another(run, capsys):
    _, wd, _ = run
    assert main(["merge", str(wd.root), "--base", "qwen3-vl-4b"]) == 1
    assert "use a new folder for another base" in capsys.readouterr().err
