"""The LLaVA-CoT recipe's Gemma 3 path on CPU: a tiny random Gemma 3 (``--base gemma-3-4b``
with ``--base-dir``) fine-tuned on synthetic samples, merged, converted with llama.cpp's own
converter, quantized, registered, evaluated, loaded through libmtmd and searched stage by
stage, and compared with transformers on text and on an image.

The run itself is one module fixture (``python -m stagewise.models.recipes.llava_cot all``, as a
user types it, in fp32: bf16 matrix products are twenty times slower on a CPU without bf16
units, and the dtype changes nothing Gemma-specific); the tests read what it left behind.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

from stagewise.models.events import AnswerFinished
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.gguf_header import inspect_gguf
from stagewise.models.inference.mtmd_prompt import Bitmap
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.llama_backend import LlamaBackend
from stagewise.models.reasoning.search import SearchSettings, StageSearch
from stagewise.models.recipes.llava_cot.__main__ import main
from stagewise.models.recipes.llava_cot.tiny_gemma import IMAGE_TOKEN, MM_TOKENS_PER_IMAGE, TEXT
from stagewise.models.recipes.llava_cot.workdir import Workdir
from stagewise.models.stages import STAGES
from tests.models.recipes.llava_cot_parity import (
    assert_same_logits,
    llama_image_prompt_logits,
    llama_text_logits,
    training_prompt_inputs,
    transformers_logits,
)

SAMPLES = 8
STEPS = 2


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Workdir, str]:
    inputs = tmp_path_factory.mktemp("tiny-gemma3")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["tiny", str(inputs), "--base", "gemma-3-4b", "--samples", str(SAMPLES)]
                    ) == 0
    base = inputs / "tiny-base"
    jsonl = inputs / "synthetic-data" / "train.jsonl"
    first_part = inputs / "synthetic-data" / "image.zip.part-aa"
    wd = Workdir(tmp_path_factory.mktemp("work-gemma3"))
    args = ["all", str(wd.root), "--jsonl", str(jsonl), "--images", str(first_part),
            "--val-size", "2", "--base", "gemma-3-4b", "--base-dir", str(base),
            "--steps", str(STEPS), "--accumulate", "2", "--lr", "3e-3", "--dtype", "fp32",
            "--save-every", "4", "--quant", "Q4_K_M", "--limit", "1", "--beam", "2",
            "--max-stage-tokens", "8", "--ctx", "2048", "--yes"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(args) == 0
    return base, wd, out.getvalue()


def test_training_ran_on_the_gemma_base(run):
    _, wd, printed = run
    record = wd.record()
    assert record["base"]["key"] == "gemma-3-4b"
    assert record["training"]["steps"] == STEPS and record["training"]["skipped"] == 0
    assert f"step {STEPS}/{STEPS}" in printed


def test_merge_keeps_the_checkpoint_layout_and_changes_the_language_model_only(run):
    """The merged weights keep the base's tensor names (the hub's, which are the only ones
    llama.cpp's converter maps), and only the language model's projections change."""
    from safetensors import safe_open

    base, wd, _ = run
    before = safe_open(str(base / "model.safetensors"), "pt")
    after = safe_open(str(wd.merged / "model.safetensors"), "pt")
    assert sorted(before.keys()) == sorted(after.keys())
    assert any(k.startswith("vision_tower.vision_model.") for k in after.keys())  # noqa: SIM118
    changed = {k for k in before.keys()  # noqa: SIM118 (safe_open is not a dict)
               if not np.array_equal(before.get_tensor(k).float().numpy(),
                                     after.get_tensor(k).float().numpy())}
    assert changed, "the adapter changed nothing"
    assert all(k.startswith("language_model.") and k.endswith("_proj.weight")
               for k in changed), changed
    for name in ("tokenizer.model", "tokenizer.json", "processor_config.json",
                 "chat_template.jinja"):
        assert (wd.merged / name).is_file(), name


def test_converted_and_quantized_files(run):
    import llama_cpp

    _, wd, _ = run
    text = inspect_gguf(wd.text_f16)
    assert text.architecture == "gemma3"
    assert text.metadata["tokenizer.ggml.model"] == "llama"  # SentencePiece: no BPE pre-tokenizer
    assert text.metadata["tokenizer.ggml.add_bos_token"] is True
    assert text.metadata["stagewise.stage_mode"] == "native"
    assert text.metadata["gemma3.attention.sliding_window"] == TEXT["sliding_window"]
    assert text.metadata["gemma3.rope.scaling.type"] == "linear"
    assert text.metadata["gemma3.rope.scaling.factor"] == 8.0
    assert text.metadata["gemma3.rope.freq_base_swa"] == TEXT["rope_local_base_freq"]
    mmproj = inspect_gguf(wd.mmproj)
    assert mmproj.metadata["clip.projector_type"] == "gemma3"
    assert "clip.vision.projector.scale_factor" not in mmproj.metadata  # the real 4, default
    q4 = inspect_gguf(wd.quantized("Q4_K_M"))
    assert q4.metadata["general.file_type"] == llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    assert "Q4_K" in {t for _, t in q4.tensors.values()}


def test_llama_cpp_computes_what_transformers_computes(run):
    """The F16 GGUF against the merged model in PyTorch, on a text prompt longer than the
    sliding window: the same next-token logits (up to F16 rounding), so the converter
    mapped every tensor, norm shift, RoPE base and scaling right, and both models agree
    on the window and on which layers slide. Measured: 0.04% of the logits' spread apart;
    ignoring the window moves them by 19%, dropping the global layer's RoPE scaling by
    1.3%, so the tolerance is 0.5%."""
    import torch
    from transformers import AutoTokenizer

    _, wd, _ = run
    tokenizer = AutoTokenizer.from_pretrained(wd.merged)
    text = ("<SUMMARY> The question asks how many red circles there are. I will count the "
            "red circles in the image and give the number. </SUMMARY>\n\n<CAPTION> The "
            "image shows a large red circle at the top left and a small blue square at the "
            "bottom.")
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and len(ids) > 1.5 * TEXT["sliding_window"]
    with Engine(wd.text_f16, wd.mmproj, EngineSettings(n_ctx=512, n_seq_max=1)) as engine:
        assert engine.tokenize(text, add_special=True) == ids  # the same tokenizer
    expected = transformers_logits(wd.merged, {"input_ids": torch.tensor([ids])})
    assert_same_logits(llama_text_logits(wd, ids), expected, 0.005)


def test_the_engine_runs_a_stage_beam_search_on_it(run, image):
    _, wd, _ = run
    with Engine(wd.quantized("Q4_K_M"), wd.mmproj,
                EngineSettings(n_ctx=2048, n_seq_max=5)) as engine:
        assert engine.family == "gemma3"
        assert not engine.uses_mrope
        assert engine.stage_mode is StageMode.NATIVE
        search = StageSearch(LlamaBackend(engine),
                             SearchSettings(beam=2, max_stage_tokens=10, seed=1))
        events = list(search.run(image, "How many red circles are there?"))
        assert engine.stats.image_encodes == 1
    result = events[-1].result
    assert isinstance(events[-1], AnswerFinished) and result.status == "finished"
    assert len(result.chosen) == len(STAGES)


def test_training_prompt_is_the_prompt_the_app_gives(run, image, image_file):
    """Token for token: the prompt the model is trained on (Gemma's processor expands
    ``<start_of_image>`` into the begin token, a fixed run of ``<image_soft_token>`` and the
    end token) is what libmtmd makes of the prompt the app sends, with one ``<bos>``, the
    image's embeddings standing where the soft tokens stand."""
    from PIL import Image

    from stagewise.models.inference.families import family_named
    from stagewise.models.recipes.llava_cot.inputs import IGNORE, load_prompt_builder
    from stagewise.models.stages import user_text

    _, wd, _ = run
    question = "How many red circles are there?"
    prompts = load_prompt_builder(wd.merged, "processor",
                                  family_named("gemma3").max_image_pixels)
    with Image.open(image_file) as picture:
        example = prompts.example(picture, question, "<SUMMARY> x </SUMMARY>")
    trained = example.inputs["input_ids"][0][example.labels[0] == IGNORE].tolist()
    soft = prompts.processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert trained.count(soft) == MM_TOKENS_PER_IMAGE
    with Engine(wd.text_f16, wd.mmproj, EngineSettings(n_ctx=512, n_seq_max=1)) as engine:
        prompt = engine.chat_prompt(user_text(question, engine.stage_mode))
        with Bitmap(image) as bitmap:
            tokenized = engine.tokenize_prompt(prompt, bitmap)
        try:
            app = [t for c in tokenized.chunks
                   for t in ([soft] * c.n_tokens if c.is_image else c.tokens)]
            app += tokenized.extra
        finally:
            tokenized.close()
    assert app == trained
    assert trained.count(prompts.processor.tokenizer.bos_token_id) == 1


def test_llama_cpp_sees_the_image_as_transformers_does(run, tmp_path):
    """The projector GGUF and libmtmd against the merged model in PyTorch, on the app's
    prompt with an image of the encoder's own size (so both resize nothing): the same
    next-token logits, so the vision tower, the pooling, the soft-embedding norm's shift
    and the projection were converted right, and both attend bidirectionally within the
    image. Measured: 0.07% of the logits' spread apart; a blank image moves them by 37%,
    causal attention over the image by 6.5%."""
    from PIL import Image, ImageDraw

    from stagewise.models.recipes.llava_cot.tiny_gemma import VISION

    _, wd, _ = run
    side = VISION["image_size"]
    picture = tmp_path / "square.png"
    image = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((20, 20, 120, 120), fill="red")
    draw.rectangle((130, 100, 210, 200), fill="blue")
    image.save(picture)
    question = "How many red circles are there?"
    inputs = training_prompt_inputs(wd, "processor", picture, question)
    got, image_tokens = llama_image_prompt_logits(wd, picture, question)
    assert image_tokens == [MM_TOKENS_PER_IMAGE]
    assert_same_logits(got, transformers_logits(wd.merged, inputs), 0.005)
