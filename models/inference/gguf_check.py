"""Checks GGUF files before llama.cpp sees them.

llama.cpp reports many broken files with an error, but some (a projector with a
wrongly typed key, an "mlp" projector without ``mm.2.weight``, ...) make it
abort or crash, which takes the whole app down. The checks here read only the
GGUF header (:func:`stagewise.models.inference.gguf_header.inspect_gguf`, pure Python) and raise
:class:`~stagewise.models.errors.ModelFileError` with a message that names the file and
the problem.

What is checked follows the llama.cpp that llama-cpp-python 0.3.36 vendors
(``tools/mtmd/clip.cpp``, ``clip-impl.h``).
"""

from __future__ import annotations

from pathlib import Path

from stagewise.models.errors import ModelFileError
from stagewise.models.inference.gguf_header import GGUFInfo, LongArray, inspect_gguf

__all__ = [
    "PROJECTOR_TYPES",
    "check_pair",
    "check_projector",
    "check_text_model",
    "projector_output_width",
    "text_input_width",
]


# Projector types the bundled clip.cpp knows (PROJECTOR_TYPE_NAMES in clip-impl.h).
PROJECTOR_TYPES: frozenset[str] = frozenset({
    "mlp", "ldp", "ldpv2", "resampler", "adapter", "qwen2vl_merger", "qwen2.5vl_merger",
    "qwen3vl_merger", "ling3vl", "step3vl", "gemma3", "gemma3nv", "gemma3na", "gemma4v",
    "gemma4a", "gemma4uv", "gemma4ua", "phi4", "idefics3", "pixtral", "ultravox", "internvl",
    "llama4", "qwen2a", "qwen3a", "glma", "qwen2.5o", "voxtral", "meralion", "musicflamingo",
    "lfm2", "kimivl", "paddleocr", "lightonocr", "cogvlm", "janus_pro", "dots_ocr",
    "dots3note_v", "dots3note_a", "deepseekocr", "deepseekocr2", "deepseek4v", "lfm2a",
    "glm4v", "glm5v", "youtuvl", "yasa2", "kimik25", "nemotron_v2_vl", "exaone4_5",
    "hunyuanvl", "minicpmv4_6", "granite_speech", "mimovl", "minimax_m3", "granite4_vision",
    "mimo_audio", "parakeet", "qwen3tts_spkenc", "qwen3tts_gen", "pockettts_spkenc",
    "pockettts_gen", "muse-glimmer",
})  # fmt: skip

# Keys clip.cpp reads with a type-asserting getter (gguf_get_val_u32 & co. abort
# the process on a type mismatch), with the GGUF type they must have when present.
_CLIP_KEY_TYPES: dict[str, str] = {
    "general.name": "string",
    "general.description": "string",
    "clip.has_vision_encoder": "bool",
    "clip.has_audio_encoder": "bool",
    "clip.has_gen_audio_encoder": "bool",
    "clip.use_gelu": "bool",
    "clip.use_silu": "bool",
    "clip.projector_type": "string",
    "clip.vision.projector_type": "string",
    "clip.vision.mm_patch_merge_type": "string",
    "clip.vision.embedding_length": "uint32",
    "clip.vision.feed_forward_length": "uint32",
    "clip.vision.block_count": "uint32",
    "clip.vision.projection_dim": "uint32",
    "clip.vision.attention.head_count": "uint32",
    "clip.vision.attention.head_count_kv": "uint32",
    "clip.vision.attention.head_dim": "uint32",
    "clip.vision.attention.layer_norm_epsilon": "float32",
    "clip.vision.image_size": "uint32",
    "clip.vision.patch_size": "uint32",
    "clip.vision.image_min_pixels": "uint32",
    "clip.vision.image_max_pixels": "uint32",
    "clip.vision.preproc_image_size": "uint32",
    "clip.vision.preproc_min_tiles": "uint32",
    "clip.vision.preproc_max_tiles": "uint32",
    "clip.vision.projector.scale_factor": "uint32",
    "clip.vision.spatial_merge_size": "uint32",
    "clip.vision.n_wa_pattern": "uint32",
    "clip.vision.window_size": "uint32",
    "clip.minicpmv_version": "int32",
    "clip.minicpmv_query_num": "uint32",
}

# Keys clip.cpp's load_hparams requires for a vision encoder.
_CLIP_VISION_REQUIRED = (
    "clip.vision.embedding_length",
    "clip.vision.attention.head_count",
    "clip.vision.feed_forward_length",
    "clip.vision.block_count",
    "clip.vision.projection_dim",
    "clip.vision.attention.layer_norm_epsilon",
    "clip.vision.image_size",
    "clip.vision.patch_size",
)

# Output width of a projector, as clip_n_mmproj_embd computes it: the tensor it
# reads and the ggml dimension (ne index) it takes. Types not listed are not
# checked.
_WIDTH_SOURCES: dict[str, tuple[str, int]] = {
    "mlp": ("mm.2.weight", 1),
    "ldp": ("mm.model.mb_block.1.block.2.1.bias", 0),
    "ldpv2": ("mm.model.peg.0.bias", 0),
    "resampler": ("resampler.proj.weight", 0),
    "adapter": ("adapter.linear.dense_4h_to_h.weight", 1),
    "qwen2vl_merger": ("mm.2.bias", 0),
    "qwen2.5vl_merger": ("mm.2.bias", 0),
    "qwen2.5o": ("mm.2.bias", 0),
    "qwen3vl_merger": ("mm.2.bias", 0),
    "exaone4_5": ("mm.2.bias", 0),
    "youtuvl": ("mm.2.bias", 0),
    "ling3vl": ("mm.2.bias", 0),
    "mimovl": ("mm.2.weight", 1),
    "gemma3": ("mm.input_projection.weight", 0),
    "gemma3nv": ("mm.input_projection.weight", 0),
    "gemma4v": ("mm.input_projection.weight", 1),
    "gemma4uv": ("mm.input_projection.weight", 1),
    "idefics3": ("mm.model.fc.weight", 1),
    "internvl": ("mm.model.mlp.3.weight", 1),
    "nemotron_v2_vl": ("mm.model.mlp.3.weight", 1),
    "pixtral": ("mm.2.weight", 1),
    "lightonocr": ("mm.2.weight", 1),
    "dots_ocr": ("mm.2.weight", 1),
    "dots3note_v": ("mm.2.weight", 1),
    "lfm2": ("mm.2.weight", 1),
    "kimivl": ("mm.2.weight", 1),
    "paddleocr": ("mm.2.weight", 1),
    "kimik25": ("mm.2.weight", 1),
    "yasa2": ("mm.2.weight", 1),
    "deepseek4v": ("mm.2.weight", 1),
    "muse-glimmer": ("mm.2.weight", 1),
    "glm4v": ("mm.down.weight", 1),
    "glm5v": ("mm.down.weight", 1),
    "minicpmv4_6": ("mm.down.weight", 1),
    "minimax_m3": ("mm.merger.fc2.bias", 0),
}

# Projector types that run the LLaVA graph (tools/mtmd/models/llava.cpp), which
# uses these tensors without checking that they were loaded.
_LLAVA_GRAPH_TYPES = frozenset({"mlp", "ldp", "ldpv2"})


# --------------------------------------------------------------------------- checks


def _require_key(info: GGUFInfo, key: str, what: str) -> object:
    if key not in info.metadata:
        raise ModelFileError(info.path, f"{what} is missing the metadata key {key!r}")
    return info.metadata[key]


def _kv_type(info: GGUFInfo, key: str) -> str | None:
    return info.value_types.get(key)


def _arch_key_int(info: GGUFInfo, suffix: str) -> int | None:
    value = info.metadata.get(f"{info.architecture}.{suffix}")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def text_input_width(info: GGUFInfo) -> int | None:
    """The embedding width a text model takes as input (llama_model_n_embd_inp).

    That is ``embedding_length``, times (1 + deepstack layers) for models with
    deepstack inputs (Qwen3-VL, Granite vision). None if the width is missing.
    """
    n_embd = info.n_embd
    if n_embd is None:
        return None
    n_deepstack = _arch_key_int(info, "n_deepstack_layers") or 0
    mapping = info.metadata.get(f"{info.architecture}.deepstack_mapping")
    if isinstance(mapping, LongArray):
        return None  # too long to have been decoded; do not guess
    if isinstance(mapping, list):
        n_deepstack = len({v for v in mapping if isinstance(v, int) and v >= 0})
    return n_embd * (1 + n_deepstack)


def check_text_model(path: Path | str) -> GGUFInfo:
    """Checks that ``path`` is a GGUF text model llama.cpp can be given.

    Returns:
        The file's header; ``info.n_embd`` is the model's width.

    Raises:
        ModelFileError: The file is unreadable, not GGUF, truncated, a
            projector, or lacks what every llama.cpp text model has.
    """
    info = inspect_gguf(path)
    if info.is_projector:
        raise ModelFileError(
            info.path,
            "this is a multimodal projector (mmproj) file, not a text model; "
            "choose it as the projector and pick the language model file as the model",
        )
    if not info.architecture:
        raise ModelFileError(info.path, "the file has no general.architecture, so it is no model")
    what = "the text model"
    _require_key(info, "tokenizer.ggml.model", what)
    _require_key(info, "tokenizer.ggml.tokens", what)
    for suffix in ("embedding_length", "block_count"):
        _require_key(info, f"{info.architecture}.{suffix}", what)
        if _arch_key_int(info, suffix) is None:
            raise ModelFileError(
                info.path, f"the metadata key '{info.architecture}.{suffix}' is not an integer"
            )
    if not info.tensors:
        raise ModelFileError(
            info.path, "the file holds no weights (it may be a vocabulary-only file)"
        )
    return info


def projector_output_width(info: GGUFInfo) -> int | None:
    """The embedding width a projector produces, as clip_n_mmproj_embd computes it.

    Returns:
        The width, or None for projector types not covered here.

    Raises:
        ModelFileError: The tensor the width is read from is missing (for the
            "mlp" type llama.cpp would crash on it).
    """
    ptype = info.projector_type
    if ptype is None or ptype not in _WIDTH_SOURCES:
        return None
    tensor, axis = _WIDTH_SOURCES[ptype]
    if ptype == "mlp" and "mm.3.weight" in info.tensors:
        tensor, axis = "mm.3.bias", 0  # Yi-style "mlp_norm" projector
    if tensor not in info.tensors:
        raise ModelFileError(
            info.path,
            f"the {ptype!r} projector is missing the tensor {tensor!r}, "
            "which llama.cpp needs to know its output width",
        )
    dims = info.tensors[tensor][0]
    if len(dims) <= axis:
        raise ModelFileError(info.path, f"the tensor {tensor!r} has too few dimensions")
    width = dims[axis]
    if ptype == "qwen3vl_merger":
        n_blocks = info.metadata.get("clip.vision.block_count")
        n_deepstack = sum(
            f"v.deepstack.{i}.fc1.weight" in info.tensors
            for i in range(n_blocks if isinstance(n_blocks, int) else 0)
        )
        width *= 1 + n_deepstack
    return width


def _check_key_types(info: GGUFInfo) -> None:
    for key, expected in _CLIP_KEY_TYPES.items():
        actual = _kv_type(info, key)
        if actual is not None and actual != expected:
            raise ModelFileError(
                info.path,
                f"the metadata key {key!r} is stored as {actual} but llama.cpp reads it as "
                f"{expected} (and would abort)",
            )


def _check_llava_tensors(info: GGUFInfo) -> None:
    needed = ["v.patch_embd.weight", "v.position_embd.weight"]
    n_blocks = info.metadata["clip.vision.block_count"]
    assert isinstance(n_blocks, int)
    for i in range(n_blocks):
        needed += [
            f"v.blk.{i}.{part}.weight"
            for part in ("attn_q", "attn_k", "attn_v", "attn_out", "ffn_up", "ffn_down")
        ]
    if info.projector_type == "mlp":
        needed += ["mm.0.weight", "mm.0.bias"]
        if "mm.3.weight" not in info.tensors:
            needed += ["mm.2.weight", "mm.2.bias"]
    for name in needed:
        if name not in info.tensors:
            raise ModelFileError(
                info.path, f"the projector is missing the tensor {name!r}, which llama.cpp needs"
            )


def check_projector(path: Path | str) -> GGUFInfo:
    """Checks that ``path`` is a vision projector (mmproj) llama.cpp can be given.

    Returns:
        The file's header.

    Raises:
        ModelFileError: The file is unreadable, not GGUF, truncated, a text
            model, has no vision encoder, an unknown projector type, or lacks
            keys or tensors that llama.cpp needs.
    """
    info = inspect_gguf(path)
    if not info.is_projector:
        arch = info.architecture or "unknown"
        raise ModelFileError(
            info.path,
            f"this is a text model (architecture {arch!r}), not a multimodal projector "
            "(mmproj) file; choose the matching mmproj file as the projector",
        )
    _check_key_types(info)
    if info.metadata.get("clip.has_vision_encoder") is not True:
        if info.metadata.get("clip.has_audio_encoder") is True:
            problem = "this projector is for audio only; Stagewise needs a vision projector"
        else:
            problem = "this projector has no vision encoder (clip.has_vision_encoder is not set)"
        raise ModelFileError(info.path, problem)
    ptype = info.projector_type
    if ptype is None:
        raise ModelFileError(info.path, "the projector does not say its type (clip.projector_type)")
    if ptype not in PROJECTOR_TYPES:
        raise ModelFileError(
            info.path,
            f"the projector type {ptype!r} is not supported by the bundled llama.cpp",
        )
    what = "the projector"
    for key in _CLIP_VISION_REQUIRED:
        _require_key(info, key, what)
    for key in ("clip.vision.image_mean", "clip.vision.image_std"):
        value = _require_key(info, key, what)
        if _kv_type(info, key) != "array[float32]" or not isinstance(value, list) or len(value) < 3:
            raise ModelFileError(
                info.path, f"the metadata key {key!r} must be an array of at least 3 float32 values"
            )
    image_size = info.metadata["clip.vision.image_size"]
    patch_size = info.metadata["clip.vision.patch_size"]
    assert isinstance(image_size, int) and isinstance(patch_size, int)
    if patch_size <= 0 or image_size > 8192:
        raise ModelFileError(info.path, "the projector's image_size or patch_size is out of range")
    if ptype in _LLAVA_GRAPH_TYPES:
        _check_llava_tensors(info)
    projector_output_width(info)  # raises if the width tensor is missing
    return info


def check_pair(model_path: Path | str, mmproj_path: Path | str) -> tuple[GGUFInfo, GGUFInfo]:
    """Checks a text model and a projector and that they fit together.

    Returns:
        The headers of the model and of the projector.

    Raises:
        ModelFileError: Either file fails its own check, or the projector's
            output width differs from the text model's input width (the error
            names the projector).
    """
    model = check_text_model(model_path)
    projector = check_projector(mmproj_path)
    produced = projector_output_width(projector)
    expected = text_input_width(model)
    if produced is not None and expected is not None and produced != expected:
        raise ModelFileError(
            projector.path,
            f"this projector produces embeddings of width {produced}, but the text model "
            f"{model.path.name} takes width {expected}; they do not belong together",
        )
    return model, projector
