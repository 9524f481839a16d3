"""A tiny, randomly initialised Gemma 3 built from a config: the recipe's Gemma 3 proof model.

The real base (google/gemma-3-4b-it, 8.6 GB) cannot be downloaded on the machines that run
the tests, so the Gemma 3 path of the recipe is proved on this one. It has the real
model's architecture and file layout in miniature:

* ``Gemma3ForConditionalGeneration`` with six text layers in Gemma 3's pattern (five
  sliding-window layers, then one global layer: llama.cpp assumes that pattern of 6 for
  every Gemma 3), local and global RoPE bases with the global one linearly scaled by 8,
  query/key norms, and a SigLIP tower whose output is average-pooled by 4 per side (the
  real kernel) into 16 image tokens; its weights named as in the published checkpoint;
* a SentencePiece BPE ``tokenizer.model`` (byte fallback, digits split, no dummy prefix)
  with Gemma's special tokens at Gemma's ids (``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2,
  ``<unk>`` 3, ``<mask>`` 4) and ``<image_soft_token>`` added after the model's own
  pieces, as in the real tokenizer; the matching ``tokenizer.json`` that transformers
  reads; llama.cpp's converter reads ``tokenizer.model`` (a SentencePiece vocabulary, so
  there is no BPE pre-tokenizer to name);
* Gemma 3's slow image processor and ``Gemma3Processor`` (no video), and Gemma 3's own
  chat template.

Kept as in the real model because llama.cpp relies on it: ``query_pre_attn_scalar`` equals
the head size (llama.cpp scales attention by the head size for every Gemma 3 but the 27B).
Different: the image is 224 pixels, not 896, and the converter reads the token count from
the processor's ``image_seq_length``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import GemmaTokenizer

__all__ = ["CONTROL_TOKENS", "IMAGE_TOKEN", "MM_TOKENS_PER_IMAGE", "build_tiny_gemma3"]

CONTROL_TOKENS = ("<mask>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
                  "<end_of_image>")
"""Gemma's control tokens after ``<pad>``, ``<eos>``, ``<bos>`` and ``<unk>`` (ids 0 to 3)."""

NEWLINES = ("\n", "\n\n")
"""Whole pieces, as in Gemma's vocabulary (the template's turns end in newlines)."""

IMAGE_TOKEN = "<image_soft_token>"
"""The token the processor repeats once per image embedding; added after the
SentencePiece pieces, as in the real tokenizer (id 262144 there)."""

MM_TOKENS_PER_IMAGE = 16
"""Image tokens: 224 / 14 = 16 patches a side, pooled by 4 (as the real 896 / 14 = 64
are) to 4 a side."""

TEXT = {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 6,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
        "query_pre_attn_scalar": 64, "sliding_window": 32, "rms_norm_eps": 1e-6,
        "rope_theta": 1_000_000.0, "rope_local_base_freq": 10_000.0,
        "rope_scaling": {"rope_type": "linear", "factor": 8.0},
        "max_position_embeddings": 4096, "hidden_activation": "gelu_pytorch_tanh"}
"""Text model: 256 wide so that Q4_K's 256-wide blocks apply; a 32-token window, so
that a short prompt already reaches past it (and yet holds a whole image); the global
layers' RoPE linearly scaled by 8, as in the real 4B (the sliding layers' is not)."""

VISION = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
          "num_attention_heads": 2, "image_size": 224, "patch_size": 14,
          "layer_norm_eps": 1e-6, "vision_use_head": False,
          "hidden_act": "gelu_pytorch_tanh"}
"""SigLIP tower, as Gemma 3's but narrow and shallow (no pooling head)."""

OWN_VISION, HUB_VISION = "vision_tower.", "vision_tower.vision_model."
"""The vision tower's tensor names: as transformers 5 saves a new model, and as the
published checkpoints (and so llama.cpp's converter) name them."""

IMAGE_MEAN = IMAGE_STD = (0.5, 0.5, 0.5)
NORM_NOISE = 0.1
"""Random weights for Gemma's RMS norms (stored as ``weight`` for ``1 + weight``, zero at
initialisation) and the image projection (zero at initialisation), so that the
converter's shifts and the image path are exercised."""


def chat_template() -> str:
    """Gemma 3 instruct's chat template (``{{ bos_token }}`` first, images as
    ``<start_of_image>``)."""
    files = resources.files("stagewise.models.recipes.llava_cot") / "templates"
    return (files / "gemma-3-chat-template.jinja").read_text(encoding="utf-8")


def _sentencepiece(texts: Iterable[str], vocab_size: int) -> bytes:
    """A SentencePiece BPE model trained on ``texts``, serialised."""
    import sentencepiece as spm

    lines = [line for text in texts for line in text.splitlines() if line.strip()]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="bpe",
        vocab_size=vocab_size, hard_vocab_limit=False, character_coverage=1.0,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
        bos_piece="<bos>", unk_piece="<unk>", control_symbols=list(CONTROL_TOKENS),
        user_defined_symbols=list(NEWLINES), byte_fallback=True, split_digits=True,
        add_dummy_prefix=False, remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True, normalization_rule_name="identity",
        minloglevel=2)
    return model.getvalue()


def _tokenizer(model_file: Path) -> GemmaTokenizer:
    """transformers' Gemma tokenizer for the SentencePiece model in ``model_file``.

    Built from the pieces and their order, without protobuf: the vocabulary is the
    pieces, the merges every split of a piece into two pieces, ranked by the merged
    piece's id (a SentencePiece BPE model's pieces are in merge order).
    """
    import sentencepiece as spm
    from tokenizers import AddedToken
    from transformers import GemmaTokenizer
    from transformers.tokenization_utils_base import generate_merges

    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    whole = {sp.id_to_piece(i) for i in range(sp.get_piece_size())
             if sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i)} | set(NEWLINES)
    merges = generate_merges(vocab, skip_tokens=whole)
    tokenizer = GemmaTokenizer(
        vocab=vocab, merges=merges, add_bos_token=True, add_eos_token=False,
        boi_token="<start_of_image>", eoi_token="<end_of_image>", image_token=IMAGE_TOKEN,
        model_max_length=TEXT["max_position_embeddings"])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in NEWLINES])
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [*CONTROL_TOKENS[1:], IMAGE_TOKEN]},
        replace_extra_special_tokens=False)
    return tokenizer


def _hub_layout(weights: Path) -> None:
    """Rename the vision tower's tensors as the published Gemma 3 checkpoints name them.

    transformers 5 saves a model made from a config with its own module names
    (``vision_tower.embeddings...``), but one loaded from a checkpoint with that
    checkpoint's names, so a merge of the real base keeps the hub's
    ``vision_tower.vision_model...``: the only names llama.cpp's converter maps.
    """
    from safetensors.torch import load_file, save_file

    tensors = load_file(weights)
    renamed = {(HUB_VISION + name[len(OWN_VISION):] if name.startswith(OWN_VISION) else name):
               tensor for name, tensor in tensors.items()}
    save_file(renamed, weights, metadata={"format": "pt"})


def build_tiny_gemma3(out: Path, texts: Iterable[str], *, vocab_size: int = 640,
                      seed: int = 0) -> Path:
    """Write a random-weight Gemma 3, its tokenizer and processor to ``out``.

    Args:
        out: The folder to write (``config.json``, ``model.safetensors``,
            ``tokenizer.model``, ``tokenizer.json``, processor files and chat template),
            as ``save_pretrained`` lays out a downloaded base.
        texts: Text to learn the SentencePiece pieces from (the sample questions and
            answers).
        vocab_size: Target size of the SentencePiece vocabulary.
        seed: Seeds the weights.

    Returns:
        ``out``.
    """
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model_file = out / "tokenizer.model"
    model_file.write_bytes(_sentencepiece(texts, vocab_size))
    tokenizer = _tokenizer(model_file)
    ids = {name: tokenizer.convert_tokens_to_ids(name)
           for name in ("<pad>", "<eos>", "<bos>", "<end_of_turn>", "<start_of_image>",
                        "<end_of_image>", IMAGE_TOKEN)}
    padded = -(-len(tokenizer) // 64) * 64
    config = Gemma3Config(
        text_config={**TEXT, "vocab_size": padded, "pad_token_id": ids["<pad>"],
                     "eos_token_id": ids["<eos>"], "bos_token_id": ids["<bos>"]},
        vision_config={**VISION, "model_type": "siglip_vision_model"},
        mm_tokens_per_image=MM_TOKENS_PER_IMAGE,
        boi_token_index=ids["<start_of_image>"], eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids[IMAGE_TOKEN], tie_word_embeddings=True,
        architectures=["Gemma3ForConditionalGeneration"])
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config)
    with torch.no_grad():
        for module in model.modules():
            if type(module).__name__ == "Gemma3RMSNorm":
                module.weight.normal_(0.0, NORM_NOISE)
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(0.0, NORM_NOISE)
    model = model.to(torch.bfloat16)
    model.generation_config.eos_token_id = [ids["<eos>"], ids["<end_of_turn>"]]
    model.save_pretrained(out, safe_serialization=True)
    _hub_layout(out / "model.safetensors")
    size = VISION["image_size"]
    image_processor = Gemma3ImageProcessorPil(
        size={"height": size, "width": size}, image_mean=list(IMAGE_MEAN),
        image_std=list(IMAGE_STD))
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                chat_template=chat_template(),
                                image_seq_length=MM_TOKENS_PER_IMAGE)
    processor.save_pretrained(out)
    # As in the published repository: llama.cpp's converter takes the tokens that are not
    # in tokenizer.model from here (transformers 5 no longer writes this file).
    (out / "added_tokens.json").write_text(json.dumps({IMAGE_TOKEN: ids[IMAGE_TOKEN]}) + "\n",
                                           encoding="utf-8")
    return out
