"""What one image costs: the tokens it takes in the context and the bytes to encode it.

Read from the projector's header; the formulas follow the llama.cpp that llama-cpp-python
0.3.36 vendors (``tools/mtmd/clip.cpp``) and err on the high side.
"""

from __future__ import annotations

import math
from pathlib import Path

from stagewise.models.inference.gguf_header import GGUFInfo, LongArray, inspect_gguf, int_value

__all__ = [
    "IMAGE_MAX_SIDE",
    "capped_image_tokens",
    "estimate_image_tokens",
    "image_tokens_and_patches",
    "vision_compute_bytes",
]

# The longest side of an image handed to libmtmd (stagewise.models.inference.images.MAX_SIDE). Kept
# here as a number so that this module does not import Pillow.
IMAGE_MAX_SIDE = 2048


# Projector types whose encoder takes the image at (about) its own resolution, and the most
# tokens clip.cpp lets one image become (hparams.set_limit_image_tokens in clip.cpp) where known.
_DYNAMIC_TYPES: dict[str, int | None] = {
    "qwen2vl_merger": 4096, "qwen2.5vl_merger": 4096, "qwen3vl_merger": 4096,
    "qwen2.5o": 4096, "glm4v": 4096, "glm5v": 4096, "youtuvl": 4096, "exaone4_5": 4096,
    "mimovl": 4096, "ling3vl": 4096, "hunyuanvl": 4096, "paddleocr": 4096,
    "pixtral": 1024, "lightonocr": 1024, "kimivl": 4096, "kimik25": 4096,
    "dots_ocr": 4096, "dots3note_v": 4096, "lfm2": 256, "gemma4v": 1120, "gemma4uv": 1120,
    "step3vl": 4096, "minimax_m3": 4096, "deepseek4v": 4096, "cogvlm": None,
}  # fmt: skip
# Patch merging that is not in the metadata: tokens = patches / merge².
_DEFAULT_MERGE = {
    "qwen2vl_merger": 2, "qwen2.5vl_merger": 2, "qwen3vl_merger": 2, "qwen2.5o": 2,
    "glm4v": 2, "glm5v": 2, "gemma3": 4, "llama4": 2, "idefics3": 4, "internvl": 2,
    "pixtral": 2, "lightonocr": 2, "kimivl": 2, "kimik25": 2, "lfm2": 2, "gemma4v": 3,
    "gemma4uv": 3, "paddleocr": 2, "dots_ocr": 2, "mimovl": 2,
}  # fmt: skip
# Projectors that cut a large image into tiles of image_size and encode each (plus an
# overview), when the metadata does not say how many tiles at most.
_TILED = frozenset({"idefics3", "internvl", "llama4", "nemotron_v2_vl", "granite4_vision"})
_MAX_TILES = 12


def image_tokens_and_patches(info: GGUFInfo) -> tuple[int, int]:
    """Tokens one image takes in the context and patches per encoder pass (conservative)."""
    md = info.metadata
    ptype = info.projector_type or ""
    patch = int_value(md.get("clip.vision.patch_size")) or 14
    size = int_value(md.get("clip.vision.image_size")) or 336
    merge = (
        int_value(md.get("clip.vision.spatial_merge_size"))
        or int_value(md.get("clip.vision.projector.scale_factor"))
        or _DEFAULT_MERGE.get(ptype, 1)
    )
    if ptype == "resampler":  # MiniCPM-V: a fixed number of queries per slice, up to 9 slices
        query = int_value(md.get("clip.minicpmv_query_num")) or 96
        return query * 10, (size // patch) ** 2
    if ptype in _DYNAMIC_TYPES:
        side = IMAGE_MAX_SIDE // patch
        patches = side * side
        max_pixels = int_value(md.get("clip.vision.image_max_pixels"))
        if max_pixels:
            patches = min(patches, max_pixels // (patch * patch))
        tokens = max(1, patches // (merge * merge))
        cap = _DYNAMIC_TYPES[ptype]
        if cap is not None and tokens > cap:
            tokens = cap
        return tokens, tokens * merge * merge
    patches = (size // patch) ** 2
    tokens = max(1, patches // (merge * merge))
    tiles = 1
    pinpoints = md.get("clip.vision.image_grid_pinpoints")
    if isinstance(pinpoints, list) and len(pinpoints) >= 2:  # LLaVA-NeXT: [w0, h0, w1, h1, ...]
        pairs = zip(pinpoints[::2], pinpoints[1::2], strict=False)
        tiles = 1 + max((int(w) // size) * (int(h) // size) for w, h in pairs)
    elif isinstance(pinpoints, LongArray) or md.get("clip.vision.mm_patch_merge_type") == (
        "spatial_unpad"
    ):
        tiles = 1 + 4 * 4  # the largest LLaVA-NeXT grid, to be safe
    elif ptype in _TILED or int_value(md.get("clip.vision.preproc_max_tiles")):
        max_tiles = int_value(md.get("clip.vision.preproc_max_tiles")) or _MAX_TILES
        grid = math.ceil(IMAGE_MAX_SIDE / size) ** 2
        tiles = 1 + min(max_tiles, grid)
    return tokens * tiles, patches


def capped_image_tokens(mmproj: Path | str, cap: int) -> int | None:
    """Tokens one image takes at most when the user caps them at ``cap``
    (``EngineSettings.image_tokens``): for a dynamic-resolution encoder, ``cap`` kept
    within what clip.cpp allows; None where the cap changes nothing (0, or an encoder
    that takes every image at one size), and the estimate stands.

    Raises:
        ModelFileError: The file cannot be read.
    """
    if cap <= 0:
        return None
    info = inspect_gguf(mmproj)
    ptype = info.projector_type or ""
    if ptype not in _DYNAMIC_TYPES:
        return None
    limit = _DYNAMIC_TYPES[ptype]
    return min(cap, limit) if limit is not None else cap


def estimate_image_tokens(mmproj: Path | str) -> int:
    """Tokens one image (at most :data:`IMAGE_MAX_SIDE` pixels a side) takes in the context.

    From the projector's header: ``(image_size / patch_size)²`` patches for fixed-resolution
    encoders, divided by the square of the patch merge (``spatial_merge_size``,
    ``projector.scale_factor`` or the type's known pooling), times the tiles of tiling
    projectors; for dynamic-resolution encoders (the Qwen-VL family, Pixtral, ...) the
    patches of a 2048-pixel square, capped as clip.cpp caps them. Errs on the high side.

    Raises:
        ModelFileError: The file cannot be read.
    """
    return image_tokens_and_patches(inspect_gguf(mmproj))[0]


def vision_compute_bytes(info: GGUFInfo, patches: int, tokens: int, n_embd_text: int,
                    flash_attn: bool) -> int:
    """Rough bytes to encode one image or tile: activations (f32) of ``patches`` rows of
    (3 × width + feed-forward) twice over, the attention scores (patches² × heads, f32)
    without flash attention, and the image embeddings handed to the text model."""
    md = info.metadata
    v_embd = int_value(md.get("clip.vision.embedding_length")) or 1024
    v_ff = int_value(md.get("clip.vision.feed_forward_length")) or 4 * v_embd
    v_head = int_value(md.get("clip.vision.attention.head_count")) or 16
    size = 2 * patches * (3 * v_embd + v_ff) * 4
    if not flash_attn:
        size += patches * patches * v_head * 4
    return size + tokens * max(n_embd_text, 1) * 4
