"""Merging the LoRA adapter into the base: a plain model folder llama.cpp's converter reads.

The merged weights are written with ``save_pretrained`` (safetensors, the base's dtype);
the tokenizer, chat template and image processor files are copied from the base
unchanged, so the GGUF carries the base's own template and the app renders the prompt the
model was trained on.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from stagewise.models.errors import StagewiseError

__all__ = ["WEIGHT_FILES", "merge_adapter"]

WEIGHT_FILES = ("*.safetensors", "*.safetensors.index.json", "*.bin", "*.bin.index.json",
                "*.pt", "*.pth", "config.json")
"""Base files not copied: the weights (written merged) and the config (written with them)."""


def merge_adapter(base_dir: Path, adapter_dir: Path, out: Path, *, dtype: str = "bf16") -> Path:
    """Write the base with the adapter merged into ``out``.

    Args:
        base_dir: The base model folder.
        adapter_dir: The LoRA adapter (``adapter_config.json`` and weights).
        out: The merged model folder; written under a temporary name, then renamed.
        dtype: "bf16" or "fp32", as trained.

    Returns:
        ``out``.

    Raises:
        StagewiseError: No adapter in ``adapter_dir``.
    """
    from peft import PeftModel

    from stagewise.models.recipes.llava_cot.train import load_base

    if not (adapter_dir / "adapter_config.json").is_file():
        raise StagewiseError(f"{adapter_dir}: no LoRA adapter here (train first)")
    model = load_base(base_dir, dtype)
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    merged.save_pretrained(partial, safe_serialization=True)
    for item in base_dir.iterdir():
        if item.is_file() and not any(item.match(p) for p in WEIGHT_FILES) \
                and not (partial / item.name).exists():
            shutil.copy2(item, partial / item.name)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out
