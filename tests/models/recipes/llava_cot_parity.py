"""Shared checks of the recipe's converted models: llama.cpp's next-token logits against
transformers' for the merged model, on a text prompt or on the app's image prompt."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.images import load_image
from stagewise.models.inference.mtmd_prompt import Bitmap
from stagewise.models.recipes.llava_cot.workdir import Workdir
from stagewise.models.stages import user_text

SEQUENCE_INPUTS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


def transformers_logits(merged: Path, inputs: dict) -> np.ndarray:
    """The merged model's (fp32) next-token logits after ``inputs``."""
    import torch
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(merged, dtype=torch.float32)
    with torch.no_grad():
        return model(**inputs).logits[0, -1].numpy()


def llama_text_logits(wd: Workdir, ids: list[int]) -> np.ndarray:
    """The F16 GGUF's next-token logits after the token ids ``ids``."""
    with Engine(wd.text_f16, wd.mmproj, EngineSettings(n_ctx=512, n_seq_max=1)) as engine:
        index = engine.eval_tokens([(0, 0, ids)])[0]
        return engine.logits(index).copy()


def training_prompt_inputs(wd: Workdir, prompting: str, picture: Path,
                           question: str) -> dict:
    """The training inputs of ``question`` about ``picture``, cut at the end of the prompt."""
    from PIL import Image

    from stagewise.models.recipes.llava_cot.inputs import IGNORE, load_prompt_builder

    with Image.open(picture) as image:
        example = load_prompt_builder(wd.merged, prompting).example(image, question, "x")
    n_prompt = int((example.labels[0] == IGNORE).sum())
    return {k: v[:, :n_prompt] if k in SEQUENCE_INPUTS else v
            for k, v in example.inputs.items()}


def llama_image_prompt_logits(wd: Workdir, picture: Path, question: str
                              ) -> tuple[np.ndarray, list[int]]:
    """The F16 pair's next-token logits for the app's prompt with ``picture``, and the
    token count of each image chunk libmtmd made."""
    with Engine(wd.text_f16, wd.mmproj, EngineSettings(n_ctx=1024, n_seq_max=1)) as engine:
        prompt = engine.chat_prompt(user_text(question, engine.stage_mode))
        with Bitmap(load_image(picture)) as bitmap:
            tokenized = engine.tokenize_prompt(prompt, bitmap)
            try:
                image_tokens = [c.n_tokens for c in tokenized.chunks if c.is_image]
                engine.eval_prompt(tokenized, 0)
            finally:
                tokenized.close()
        return engine.logits(-1).copy(), image_tokens


def assert_same_logits(got: np.ndarray, expected: np.ndarray, tolerance: float) -> None:
    """Within ``tolerance`` of the expected logits' spread, with the same top token (the
    GGUF's padded vocabulary rows beyond transformers' are ignored)."""
    got = got[: len(expected)]
    spread = float(expected.max() - expected.min())
    assert np.abs(got - expected).max() < tolerance * spread, \
        f"{np.abs(got - expected).max() / spread:.4f} of the spread apart"
    assert int(got.argmax()) == int(expected.argmax())
