"""Tiny, randomly initialised Qwen2.5-VL and Qwen3-VL built from configs: the proof models.

The real base (Qwen2.5-VL-3B-Instruct, 7.5 GB) cannot be downloaded on the machines that
run the tests, so the recipe's end-to-end test fine-tunes this one instead. It has the
real model's architecture and file layout in miniature: ``Qwen2_5_VLForConditionalGeneration``
with M-RoPE sections in Qwen's 2:3:3 proportion, a windowed vision tower whose last
block attends fully, a byte-level BPE tokenizer with Qwen2's pre-tokenizer pattern and
Qwen's special tokens, and Qwen2.5-VL's own chat template.

:func:`build_tiny_qwen3vl` does the same for Qwen3-VL (``Qwen3VLForConditionalGeneration``):
16-pixel patches, a learnt position embedding, deepstack mergers, interleaved M-RoPE in
Qwen3-VL's 24:20:20 proportion, Qwen3-VL-Instruct's chat template and image processor
settings, and the same kind of tokenizer.

The tokenizer is learnt from the sample answers, so llama.cpp's converter cannot
recognise its pre-tokenizer by hashing (that hash is of a known vocabulary's output);
the conversion names ``qwen2`` explicitly for it (:data:`TINY_PRE_TOKENIZER`).
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["QWEN2_PATTERN", "SPECIAL_TOKENS", "TINY_PRE_TOKENIZER", "build_tiny_qwen3vl",
           "build_tiny_qwen25vl", "qwen2_pipeline", "qwen_tokenizer"]

QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""Qwen2's pre-tokenizer split (one digit per piece), as in its ``tokenizer.json``."""

SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
    "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
"""Qwen2.5-VL's added tokens, in its order."""

TINY_PRE_TOKENIZER = "qwen2"
"""What llama.cpp calls the tiny tokenizer's pre-tokenizer (``tokenizer.ggml.pre``)."""

TEXT = {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "max_position_embeddings": 4096,
        "rope_scaling": {"type": "mrope", "mrope_section": [8, 12, 12]}}
"""Text model: head size 64, so the M-RoPE sections (8, 12, 12) cover its 32 frequency
pairs as Qwen's (16, 24, 24) cover 64; 256 wide so that Q4_K_M's 256-wide blocks apply."""

VISION = {"depth": 4, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2,
          "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
          "window_size": 112, "fullatt_block_indexes": [1, 3], "in_chans": 3,
          "tokens_per_second": 2, "hidden_act": "silu"}
"""Vision tower: windowed and full-attention blocks alternate (``n_wa_pattern`` 2). At
least three blocks: the converter maps the merger's ``mlp.2`` through the block numbers."""

IMAGE_PIXELS = (56 * 56, 224 * 224)
"""The image processor's pixel range: at most 64 image tokens, to keep the test fast."""

TEXT3 = {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 3,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
         "rms_norm_eps": 1e-6, "hidden_act": "silu", "max_position_embeddings": 4096,
         "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0,
                             "mrope_section": [12, 10, 10], "mrope_interleaved": True}}
"""Qwen3-VL text model: head size 64 (32 frequency pairs, split 12/10/10 as Qwen3-VL's
24/20/20 splits 64), interleaved M-RoPE and Qwen3-VL-4B's rope theta; 256 wide for Q4_K.
Three layers, one more than the deepstack mergers: llama.cpp adds a deepstack feature
after its layer before dropping the rows whose logits are not wanted, so a deepstack on the
last layer fails an assertion (``src/models/qwen3vl.cpp``) as soon as a prompt holds an
image. The real models (36 layers, 3 mergers for the 4B) never meet this."""

VISION3 = {"depth": 4, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2,
           "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
           "in_channels": 3, "hidden_act": "gelu_pytorch_tanh",
           "num_position_embeddings": 256, "deepstack_visual_indexes": [1, 2]}
"""Qwen3-VL vision tower: 16-pixel patches, a 16x16 grid of learnt position embeddings
(interpolated to the image's grid, in transformers and in libmtmd alike), and deepstack
mergers after blocks 1 and 2 whose outputs are added to the first two text layers (as
Qwen3-VL-4B's after blocks 5, 11 and 17 go to its first three). Head size 32: libmtmd's
vision M-RoPE splits it in four."""

IMAGE_PIXELS3 = (64 * 64, 256 * 256)
"""The tiny Qwen3-VL's pixel range: at most 64 image tokens (32x32 pixels each), to keep the
test fast. Training takes libmtmd's floor (8 tokens) instead of this one's, as for any
Qwen base (:data:`stagewise.models.recipes.llava_cot.inputs.LIBMTMD_MIN_QWEN_TOKENS`)."""

QWEN3_PREPROCESSOR = {"patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
                      "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
                      "processor_class": "Qwen3VLProcessor",
                      "image_processor_type": "Qwen2VLImageProcessorFast"}
"""Qwen3-VL-Instruct's ``preprocessor_config.json`` less its size (65,536 to 16,777,216
pixels there): SigLIP's 0.5 mean and deviation, not CLIP's, and the fast class name, which
transformers loads as ``Qwen2VLImageProcessorPil`` when asked for the slow one."""


def _template(name: str) -> str:
    files = resources.files("stagewise.models.recipes.llava_cot") / "templates"
    return (files / name).read_text(encoding="utf-8")


def chat_template() -> str:
    """Qwen2.5-VL-Instruct's chat template (the default system turn, images as
    ``<|vision_start|><|image_pad|><|vision_end|>``)."""
    return _template("qwen2.5-vl-chat-template.jinja")


def qwen3vl_chat_template() -> str:
    """Qwen3-VL-Instruct's chat template (no default system turn; images as
    ``<|vision_start|><|image_pad|><|vision_end|>``)."""
    return _template("qwen3-vl-chat-template.jinja")


def _tokenizer(texts: Iterable[str], vocab_size: int, template: str) -> Any:
    """A byte-level BPE learnt from ``texts``, with Qwen2's pre-tokenizer, Qwen's special
    tokens (after the learnt vocabulary) and ``template`` as its chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    qwen2_pipeline(bpe)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(list(texts), trainer)
    return qwen_tokenizer(bpe, template)


def qwen2_pipeline(bpe: Any) -> Any:
    """Give a ``tokenizers.Tokenizer`` Qwen2's pre-tokenizer (its split pattern, then bytes)
    and byte-level decoder; returns it."""
    from tokenizers import Regex, decoders, pre_tokenizers

    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    return bpe


def qwen_tokenizer(bpe: Any, template: str) -> Any:
    """A ``transformers`` Qwen2 tokenizer around the byte-level BPE ``bpe``, with Qwen's
    special tokens (after its vocabulary) and ``template`` as its chat template."""
    from transformers import Qwen2TokenizerFast

    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=bpe, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token=None, additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        model_max_length=TEXT["max_position_embeddings"], errors="replace",
        clean_up_tokenization_spaces=False)
    tokenizer.add_special_tokens({"pad_token": "<|endoftext|>"})
    tokenizer.chat_template = template
    return tokenizer


def _token_ids(tokenizer: Any) -> tuple[dict[str, int], int]:
    """The special tokens' ids, and the vocabulary size rounded up to a multiple of 64."""
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in SPECIAL_TOKENS}
    return ids, -(-len(tokenizer) // 64) * 64


def _token_config(ids: dict[str, int]) -> dict[str, int]:
    """The special-token ids a Qwen-VL config names."""
    return {"image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
            "vision_start_token_id": ids["<|vision_start|>"],
            "vision_end_token_id": ids["<|vision_end|>"]}


def _text_token_config(ids: dict[str, int]) -> dict[str, int]:
    """The text model's BOS, EOS and padding ids (the defaults are the real vocabulary's)."""
    return {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"]}


def build_tiny_qwen25vl(out: Path, texts: Iterable[str], *, vocab_size: int = 640,
                        seed: int = 0, tokenizer: Any = None) -> Path:
    """Write a random-weight Qwen2.5-VL, its tokenizer and processor to ``out``.

    Args:
        out: The folder to write (``config.json``, ``model.safetensors``, tokenizer and
            processor files), as ``save_pretrained`` lays out a downloaded base.
        texts: Text to learn the BPE merges from (the sample questions and answers).
        vocab_size: Target size of the learnt vocabulary, special tokens excluded.
        seed: Seeds the weights.
        tokenizer: A ``transformers`` tokenizer with Qwen's special tokens to use instead
            of learning one (:func:`qwen_tokenizer`, e.g. around Qwen2's real vocabulary);
            ``texts`` and ``vocab_size`` are then unused.

    Returns:
        ``out``.
    """
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLImageProcessor,
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer or _tokenizer(texts, vocab_size, chat_template())
    ids, padded = _token_ids(tokenizer)
    config = Qwen2_5_VLConfig(
        vision_config={**VISION, "out_hidden_size": TEXT["hidden_size"]},
        text_config={**TEXT, "vocab_size": padded, **_text_token_config(ids)},
        vocab_size=padded, tie_word_embeddings=True, **_token_config(ids),
        **_text_token_config(ids), architectures=["Qwen2_5_VLForConditionalGeneration"])
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.save_pretrained(out, safe_serialization=True)
    low, high = IMAGE_PIXELS
    tokenizer.save_pretrained(out)
    Qwen2VLImageProcessor(min_pixels=low, max_pixels=high).save_pretrained(out)
    return out


def build_tiny_qwen3vl(out: Path, texts: Iterable[str], *, vocab_size: int = 640,
                       seed: int = 0) -> Path:
    """Write a random-weight Qwen3-VL, its tokenizer and image processor to ``out``.

    Args:
        out: The folder to write (``config.json``, ``model.safetensors``, tokenizer and
            ``preprocessor_config.json``), as a downloaded Qwen3-VL-Instruct is laid out.
        texts: Text to learn the BPE merges from (the sample questions and answers).
        vocab_size: Target size of the learnt vocabulary, special tokens excluded.
        seed: Seeds the weights.

    Returns:
        ``out``.
    """
    import json

    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(texts, vocab_size, qwen3vl_chat_template())
    ids, padded = _token_ids(tokenizer)
    config = Qwen3VLConfig(
        vision_config={**VISION3, "out_hidden_size": TEXT3["hidden_size"]},
        text_config={**TEXT3, "vocab_size": padded, **_text_token_config(ids)},
        tie_word_embeddings=True, **_token_config(ids),
        architectures=["Qwen3VLForConditionalGeneration"])
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).to(torch.bfloat16)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    low, high = IMAGE_PIXELS3
    processor = {"size": {"longest_edge": high, "shortest_edge": low}, **QWEN3_PREPROCESSOR}
    (out / "preprocessor_config.json").write_text(json.dumps(processor, indent=2) + "\n",
                                                  encoding="utf-8")
    return out
