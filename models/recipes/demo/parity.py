"""Next-token logits of the same prompt through llama.cpp and through PyTorch.

The prompt is tokenized once, by libmtmd; both sides get those ids, so a difference can
only come from the graph or the weights.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
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


def llama_logits(model: Path, mmproj: Path, pixels: np.ndarray, user_text: str, *,
                 earlier: Sequence[tuple[str, str]] = (), system: str = "") -> LlamaLogits:
    """Evaluate ``user_text`` with the ``(H, W, 3)`` uint8 image through llama.cpp (after
    ``earlier`` turns and a ``system`` message, when given: a verifier's prompt)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    image = load_image(buffer.getvalue())
    with Engine(model, mmproj, EngineSettings(n_ctx=1024, n_seq_max=1, threads=2)) as engine:
        parts = prompt_parts(user_text, earlier=earlier, system=system)
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


def parity_report(model: object, files: Sequence[tuple[str, Path]], mmproj: Path,
                  pixels: np.ndarray, user_text: str, *,
                  earlier: Sequence[tuple[str, str]] = (), system: str = "") -> dict:
    """For each ``(label, text model file)``: the largest difference between its next-token
    logits through llama.cpp and PyTorch's, the logits' range, and whether both pick the
    same top token."""
    report = {}
    for label, path in files:
        ll = llama_logits(path, mmproj, pixels, user_text, earlier=earlier, system=system)
        tl = torch_logits(model, pixels, ll)
        report[label] = {"max_abs_diff": float(np.abs(ll.logits - tl).max()),
                         "logit_range": float(tl.max() - tl.min()),
                         "same_argmax": bool(ll.logits.argmax() == tl.argmax())}
    return report


def pictures(puzzles: Sequence[object], spec: object) -> np.ndarray:
    """``(n, H, W, 3)`` uint8: each puzzle's picture at the model's input size."""
    from stagewise.models.build.puzzles import draw

    size = (spec.image_size, spec.image_size)
    return np.stack([np.asarray(draw(p.scene).convert("RGB").resize(size)) for p in puzzles])
