"""Next-token logits of the same prompt through llama.cpp and through PyTorch.

The prompt is tokenized once, by libmtmd; both sides get those ids, so a difference can
only come from the graph or the weights.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.images import load_image
from stagewise.models.inference.mtmd_prompt import Bitmap
from stagewise.models.recipes.demo.tokenizer import prompt_parts


@dataclass(frozen=True)
class LlamaLogits:
    before: tuple[int, ...]  # text tokens before the image
    n_image: int  # embeddings the image became
    after: tuple[int, ...]  # text tokens after it
    logits: np.ndarray  # the last token's logits


def llama_logits(model: Path, mmproj: Path, pixels: np.ndarray, user_text: str) -> LlamaLogits:
    """Evaluate ``user_text`` with the ``(H, W, 3)`` uint8 image through llama.cpp."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    image = load_image(buffer.getvalue())
    with Engine(model, mmproj, EngineSettings(n_ctx=1024, n_seq_max=1, threads=2)) as engine:
        parts = prompt_parts(user_text)
        with Bitmap(image) as bitmap:
            prompt = engine.tokenize_prompt(parts.before + engine.media_marker + parts.after,
                                            bitmap)
            try:
                chunks, after = prompt.chunks, tuple(prompt.tail_tokens())
                if len(chunks) != 2 or not chunks[1].is_image or not after:
                    raise AssertionError(f"expected text, image, text: {chunks}, {after}")
                engine.eval_prompt(prompt, 0)
                row = engine.logits(-1).copy()
            finally:
                prompt.close()
    return LlamaLogits(chunks[0].tokens, chunks[1].n_tokens, after, row)


def torch_logits(model: object, pixels: np.ndarray, ll: LlamaLogits) -> np.ndarray:
    """The PyTorch model's last-token logits for the same ids and image."""
    import torch

    from stagewise.models.recipes.demo.model import normalise

    ids = [*ll.before, *([0] * ll.n_image), *ll.after]
    with torch.no_grad():
        out = model(torch.tensor([ids]), normalise(pixels[None], model.spec),
                    image_at=len(ll.before))
    return out[0, -1].float().numpy()
