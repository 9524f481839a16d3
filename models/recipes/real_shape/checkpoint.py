"""A random-weight Hugging Face checkpoint of any size, written without holding it in memory.

transformers builds the model on the ``meta`` device (shapes, no data); then each module in
turn gets real storage in bfloat16, transformers' own initialisation
(``_init_weights``), and its tensors go into a safetensors shard of at most
:data:`SHARD_BYTES`, before its storage is dropped again. Peak memory is one shard and one
module, not the model: a 4B model is written in about 2 GB instead of 9.

The tensors are named as ``save_pretrained`` names them (transformers' reverse weight
conversion), so llama.cpp's converter reads the folder as it reads a downloaded base.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["SHARD_BYTES", "write_random_checkpoint"]

SHARD_BYTES = 1 << 30
"""Largest safetensors shard written (and so about the most memory a shard takes)."""


def _named_tensors(model: Any) -> Iterator[tuple[str, Any]]:
    """Each module's own parameters and persistent buffers, initialised, in order (a weight
    tied to another is given under both names; the caller leaves the tied name out)."""
    import torch

    for prefix, module in model.named_modules():
        own = [(n, p) for n, p in module.named_parameters(recurse=False)]
        persistent = [(n, b) for n, b in module.named_buffers(recurse=False)
                      if n not in module._non_persistent_buffers_set]
        if not own and not persistent:
            continue
        if any(t.is_meta for _, t in own + persistent):
            module.to_empty(device="cpu", recurse=False)
            model._init_weights(module)
        for name, tensor in [*module.named_parameters(recurse=False),
                             *((n, b) for n, b in module.named_buffers(recurse=False)
                               if n not in module._non_persistent_buffers_set)]:
            full = f"{prefix}.{name}" if prefix else name
            value = tensor.detach()
            if value.is_floating_point():
                value = value.to(torch.bfloat16)
            yield full, value.contiguous()
        module.to("meta")


def write_random_checkpoint(architecture: str, config: dict[str, Any], out: Path, *,
                            seed: int = 0,
                            rename: Callable[[str], str] = lambda name: name) -> Path:
    """Write ``config.json`` and random bfloat16 weights of ``architecture`` to ``out``.

    Args:
        architecture: A transformers model class, e.g. "Qwen2_5_VLForConditionalGeneration".
        config: The configuration's values (``model_type`` selects the config class).
        out: The folder to write.
        seed: Seeds the weights.
        rename: Applied to each saved tensor name after transformers' own renaming (a
            published checkpoint's layout where transformers saves another).

    Returns:
        ``out``.
    """
    import torch
    import transformers
    from safetensors.torch import save_file
    from transformers import AutoConfig
    from transformers.core_model_loading import revert_weight_conversion

    out.mkdir(parents=True, exist_ok=True)
    values = dict(config)
    model_type = values.pop("model_type")
    hf_config = AutoConfig.for_model(model_type, **values)
    hf_config.architectures = [architecture]
    hf_config.torch_dtype = "bfloat16"
    model_class = getattr(transformers, architecture)
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("meta"):
            model = model_class(hf_config)
    finally:
        torch.set_default_dtype(default)
    tied = set(getattr(model, "all_tied_weights_keys", None) or {}) if getattr(
        hf_config, "tie_word_embeddings", False) else set()
    shapes = {name: tensor for name, tensor in model.state_dict().items()}
    saved_names = {name: rename(new) for new, name in _saved_names(
        revert_weight_conversion, model, shapes).items()}

    index: dict[str, str] = {}
    shard: dict[str, Any] = {}
    shard_bytes, shard_no, files = 0, 0, []

    def flush() -> None:
        nonlocal shard, shard_bytes, shard_no
        if not shard:
            return
        shard_no += 1
        name = f"model-{shard_no:05d}.safetensors"
        save_file(shard, str(out / name), metadata={"format": "pt"})
        files.append(name)
        for key in shard:
            index[key] = name
        shard, shard_bytes = {}, 0

    with torch.no_grad():
        for name, tensor in _named_tensors(model):
            if name in tied or name not in saved_names:
                continue
            size = tensor.numel() * tensor.element_size()
            if shard and shard_bytes + size > SHARD_BYTES:
                flush()
            shard[saved_names[name]] = tensor
            shard_bytes += size
        flush()
    total = sum((out / f).stat().st_size for f in files)
    (out / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": dict(sorted(index.items()))},
        indent=1) + "\n", encoding="utf-8")
    hf_config.save_pretrained(out)
    return out


def _saved_names(revert: Callable[..., dict[str, Any]], model: Any,
                 shapes: dict[str, Any]) -> dict[str, str]:
    """Saved name -> the module's name, by transformers' reverse conversion of the keys."""
    saved = revert(model, dict(shapes))
    by_identity = {id(t): name for name, t in shapes.items()}
    names = {}
    for new, tensor in saved.items():
        old = by_identity.get(id(tensor))
        if old is None:
            raise RuntimeError(f"cannot tell which weight {new!r} is (a converted tensor)")
        names[new] = old
    return names
