"""A random-weight PRM in a Hugging Face folder: the recipe's proof when no hub is reachable.

It has VL-PRM's published shape in miniature (``Qwen2_5_VLForConditionalGeneration``, the
LLaVA-CoT recipe's tiny Qwen2.5-VL) and Qwen2's real tokenizer
(:func:`~stagewise.models.recipes.real_vocab.qwen2_hf_tokenizer`) with Qwen2.5-VL's chat
template, so the conversion sees what a downloaded VL-PRM gives it: a tokenizer llama.cpp
recognises by hash, and "+" and "-" where the real vocabulary has them. Its scores mean
nothing.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["build_tiny_prm", "tiny_prm_folder"]


def build_tiny_prm(out: Path, *, seed: int = 0, source: Path | None = None) -> Path:
    """Write the random-weight PRM folder to ``out``.

    Args:
        out: The folder (created).
        seed: Seeds the weights.
        source: llama.cpp's source folder (for Qwen2's vocabulary); fetched with the
            converter by default.

    Returns:
        ``out``.
    """
    from stagewise.models.recipes.llava_cot import tiny_qwen
    from stagewise.models.recipes.real_vocab import qwen2_hf_tokenizer

    tokenizer = qwen2_hf_tokenizer(tiny_qwen.chat_template(), source)
    return tiny_qwen.build_tiny_qwen25vl(Path(out), [], seed=seed, tokenizer=tokenizer)


def tiny_prm_folder(cache: Path | None = None, source: Path | None = None) -> Path:
    """:func:`build_tiny_prm`'s folder, written once into the cache folder."""
    from stagewise.models.recipes.real_vocab import cached_folder

    return cached_folder("tiny-prm-hf", ("tiny-prm", 1),
                         lambda folder: build_tiny_prm(folder, source=source), cache)
