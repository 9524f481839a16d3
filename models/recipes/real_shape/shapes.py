"""The catalogue's models at their published shapes: configuration values, with sources.

Each :class:`Shape` holds what a downloaded base's ``config.json`` (and image processor
configuration) says, written here by hand because the hubs cannot be reached where this
runs; every value is from the file named in ``source``. Only the sizes matter to a
random-weight model: the weights are transformers' random initialisation
(:mod:`stagewise.models.recipes.real_shape.checkpoint`), the tokenizer and chat template are
the real ones where they can be had (:mod:`stagewise.models.recipes.real_shape.vocab`).

:data:`SCALED` holds the same shapes scaled down (few and narrow layers, every structural
value kept): the builder's tests run on them in seconds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SCALED", "SHAPES", "Shape", "scaled"]


@dataclass(frozen=True)
class Shape:
    """One model's published shape and how the catalogue ships it.

    Attributes:
        name: The command line's name for it (``real_shape NAME``).
        catalogue_id: The catalogue entry it stands for.
        architecture: The transformers class (``config.json``'s ``architectures``).
        config: ``config.json``'s values (text and vision configurations nested).
        processor: ``preprocessor_config.json``'s values that llama.cpp's converter reads.
        mmproj_type: The converter's ``--outtype`` for the projector, as the catalogue's
            projector file is ("q8_0" or "f16").
        vocab: Which tokenizer the text model gets
            (:data:`~stagewise.models.recipes.real_shape.vocab.VOCABS`).
        source: Where the configuration values are from.
    """

    name: str
    catalogue_id: str
    architecture: str
    config: dict[str, Any]
    processor: dict[str, Any]
    mmproj_type: str
    vocab: str
    source: str
    quant: str = "Q4_K_M"
    notes: tuple[str, ...] = field(default=())


QWEN25_VL_3B = Shape(
    name="qwen2.5-vl-3b", catalogue_id="qwen2.5-vl-3b-q4",
    architecture="Qwen2_5_VLForConditionalGeneration",
    config={
        "model_type": "qwen2_5_vl", "tie_word_embeddings": True,
        "image_token_id": 151655, "video_token_id": 151656,
        "vision_start_token_id": 151652, "vision_end_token_id": 151653,
        "text_config": {
            "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
            "num_attention_heads": 16, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0, "max_position_embeddings": 128000,
            "vocab_size": 151936, "hidden_act": "silu", "sliding_window": 32768,
            "use_sliding_window": False, "bos_token_id": 151643, "eos_token_id": 151645,
            "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
            "tie_word_embeddings": True,
        },
        "vision_config": {
            "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
            "in_chans": 3, "out_hidden_size": 2048, "patch_size": 14,
            "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
            "hidden_act": "silu",
        },
    },
    processor={"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14,
               "temporal_patch_size": 2, "merge_size": 2,
               "image_mean": [0.48145466, 0.4578275, 0.40821073],
               "image_std": [0.26862954, 0.26130258, 0.27577711],
               "image_processor_type": "Qwen2VLImageProcessor",
               "processor_class": "Qwen2_5_VLProcessor"},
    mmproj_type="q8_0", vocab="qwen2.5-vl",
    source="https://huggingface.co/Qwen/Qwen2.5-VL-3B-Instruct/blob/main/config.json and "
           "preprocessor_config.json",
)

QWEN3_VL_4B = Shape(
    name="qwen3-vl-4b", catalogue_id="qwen3-vl-4b-instruct-q4",
    architecture="Qwen3VLForConditionalGeneration",
    config={
        "model_type": "qwen3_vl", "tie_word_embeddings": True,
        "image_token_id": 151655, "video_token_id": 151656,
        "vision_start_token_id": 151652, "vision_end_token_id": 151653,
        "text_config": {
            "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
            "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
            "rms_norm_eps": 1e-6, "max_position_embeddings": 262144,
            "vocab_size": 151936, "hidden_act": "silu", "bos_token_id": 151643,
            "eos_token_id": 151645, "tie_word_embeddings": True,
            "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0,
                                "mrope_section": [24, 20, 20], "mrope_interleaved": True},
        },
        "vision_config": {
            "depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16,
            "in_channels": 3, "out_hidden_size": 2560, "patch_size": 16,
            "spatial_merge_size": 2, "temporal_patch_size": 2,
            "num_position_embeddings": 2304, "deepstack_visual_indexes": [5, 11, 17],
            "hidden_act": "gelu_pytorch_tanh",
        },
    },
    processor={"size": {"longest_edge": 16777216, "shortest_edge": 65536},
               "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
               "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
               "processor_class": "Qwen3VLProcessor",
               "image_processor_type": "Qwen2VLImageProcessorFast"},
    mmproj_type="q8_0", vocab="qwen3-vl",
    source="https://huggingface.co/Qwen/Qwen3-VL-4B-Instruct/blob/main/config.json and "
           "preprocessor_config.json",
)

GEMMA3_4B = Shape(
    name="gemma3-4b", catalogue_id="gemma3-4b-q4",
    architecture="Gemma3ForConditionalGeneration",
    config={
        "model_type": "gemma3", "mm_tokens_per_image": 256, "boi_token_index": 255999,
        "eoi_token_index": 256000, "image_token_index": 262144,
        "tie_word_embeddings": True,
        "text_config": {
            "hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 34,
            "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
            "query_pre_attn_scalar": 256, "sliding_window": 1024, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
            "rope_scaling": {"rope_type": "linear", "factor": 8.0},
            "max_position_embeddings": 131072, "vocab_size": 262208,
            "hidden_activation": "gelu_pytorch_tanh", "pad_token_id": 0,
            "eos_token_id": 1, "bos_token_id": 2,
        },
        "vision_config": {
            "model_type": "siglip_vision_model", "hidden_size": 1152,
            "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
            "image_size": 896, "patch_size": 14, "layer_norm_eps": 1e-6,
            "vision_use_head": False, "hidden_act": "gelu_pytorch_tanh",
        },
    },
    processor={"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
               "size": {"height": 896, "width": 896}, "image_seq_length": 256,
               "image_processor_type": "Gemma3ImageProcessor",
               "processor_class": "Gemma3Processor"},
    mmproj_type="f16", vocab="gemma3",
    source="https://huggingface.co/google/gemma-3-4b-it/blob/main/config.json and "
           "preprocessor_config.json",
)

SMOLVLM2_2B = Shape(
    name="smolvlm2-2.2b", catalogue_id="smolvlm2-2.2b-q4",
    architecture="SmolVLMForConditionalGeneration",
    config={
        "model_type": "smolvlm", "scale_factor": 3, "image_token_id": 49190,
        "tie_word_embeddings": False,
        "text_config": {
            "model_type": "llama", "architectures": ["VLlama3ForCausalLM"],
            "hidden_size": 2048, "intermediate_size": 8192,
            "num_hidden_layers": 24, "num_attention_heads": 32, "num_key_value_heads": 32,
            "rms_norm_eps": 1e-5, "rope_theta": 130000.0, "max_position_embeddings": 8192,
            "vocab_size": 49280, "hidden_act": "silu", "tie_word_embeddings": False,
            "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
        },
        "vision_config": {
            "hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
            "num_attention_heads": 16, "image_size": 384, "patch_size": 14,
            "layer_norm_eps": 1e-6, "hidden_act": "gelu_pytorch_tanh",
        },
    },
    processor={"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
               "max_image_size": {"longest_edge": 384}, "size": {"longest_edge": 1536},
               "do_image_splitting": True, "image_processor_type": "SmolVLMImageProcessor",
               "processor_class": "SmolVLMProcessor"},
    mmproj_type="q8_0", vocab="smolvlm",
    source="https://huggingface.co/HuggingFaceTB/SmolVLM2-2.2B-Instruct/blob/main/"
           "config.json and preprocessor_config.json",
)

SHAPES: dict[str, Shape] = {s.name: s for s in (QWEN25_VL_3B, QWEN3_VL_4B, GEMMA3_4B,
                                                 SMOLVLM2_2B)}
"""The shapes the recipe builds, by name."""


def _scaled_config(shape: Shape) -> dict[str, Any]:
    """The shape's configuration with few, narrow layers; everything structural kept."""
    text = dict(shape.config["text_config"])
    vision = dict(shape.config["vision_config"])
    width = 256  # Q4_K's 256-wide blocks still apply
    text.update(hidden_size=width, intermediate_size=512)
    heads, kv = text["num_attention_heads"], text["num_key_value_heads"]
    text.update(num_attention_heads=4, num_key_value_heads=max(1, 4 * kv // heads))
    if "head_dim" in text:
        text["head_dim"] = 64
    if "query_pre_attn_scalar" in text:
        text["query_pre_attn_scalar"] = 64
    if shape.name.startswith("qwen2.5"):
        text["rope_scaling"] = {"type": "mrope", "mrope_section": [8, 12, 12]}
        vision.update(depth=4, hidden_size=64, intermediate_size=128, num_heads=2,
                      fullatt_block_indexes=[1, 3], out_hidden_size=width)
        text["num_hidden_layers"] = 2
    elif shape.name.startswith("qwen3"):
        text["rope_parameters"] = {**text["rope_parameters"], "mrope_section": [12, 10, 10]}
        vision.update(depth=4, hidden_size=64, intermediate_size=128, num_heads=2,
                      deepstack_visual_indexes=[1, 2], out_hidden_size=width,
                      num_position_embeddings=256)
        text["num_hidden_layers"] = 3
    elif shape.name.startswith("gemma3"):
        vision.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=2, image_size=224)
        text.update(num_hidden_layers=6, sliding_window=32)
    else:
        vision.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=2)
        text["num_hidden_layers"] = 2
    config = {**shape.config, "text_config": text, "vision_config": vision}
    if shape.name.startswith("gemma3"):
        config["mm_tokens_per_image"] = 16
    return config


def scaled(shape: Shape) -> Shape:
    """``shape`` scaled down for tests: the same files and vocabulary, tiny layers."""
    processor = dict(shape.processor)
    if shape.name.startswith("gemma3"):
        processor.update(size={"height": 224, "width": 224}, image_seq_length=16)
    return dataclasses.replace(shape, name=f"{shape.name}-scaled",
                               config=_scaled_config(shape), processor=processor)


SCALED: dict[str, Shape] = {s.name: s for s in map(scaled, SHAPES.values())}
""":data:`SHAPES` scaled down, by name (``qwen2.5-vl-3b-scaled``, ...)."""
