"""The real-shape builder's parts, on its scaled-down shapes (the real ones take an hour)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

from safetensors import safe_open

from stagewise.models.recipes.real_shape.build import _renamer
from stagewise.models.recipes.real_shape.checkpoint import write_random_checkpoint
from stagewise.models.recipes.real_shape.shapes import SCALED, SHAPES


def _saved(folder):
    shapes = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            for key in f.keys():  # noqa: SIM118 (a safetensors file, not a dict)
                shapes[key] = tuple(f.get_slice(key).get_shape())
    return shapes


def test_the_scaled_shapes_keep_the_real_vocabulary_and_files():
    assert set(SHAPES) == {"qwen2.5-vl-3b", "qwen3-vl-4b", "gemma3-4b", "smolvlm2-2.2b"}
    for name, shape in SHAPES.items():
        small = SCALED[f"{name}-scaled"]
        assert small.config["text_config"]["vocab_size"] == shape.config["text_config"][
            "vocab_size"]
        assert small.mmproj_type == shape.mmproj_type and small.vocab == shape.vocab
        assert shape.source.startswith("https://huggingface.co/")


@pytest.mark.parametrize("name", ["qwen2.5-vl-3b-scaled", "smolvlm2-2.2b-scaled"])
def test_streamed_weights_are_what_save_pretrained_writes(tmp_path, name):
    """Same tensor names and shapes as transformers' own save of the same configuration,
    random values of transformers' initialisation, written in more than one shard."""
    import torch
    import transformers
    from transformers import AutoConfig

    from stagewise.models.recipes.real_shape import checkpoint

    shape = SCALED[name]
    checkpoint.SHARD_BYTES, saved_limit = 20 << 20, checkpoint.SHARD_BYTES
    try:
        ours = write_random_checkpoint(shape.architecture, shape.config, tmp_path / "ours",
                                       rename=_renamer(shape))
    finally:
        checkpoint.SHARD_BYTES = saved_limit
    values = dict(shape.config)
    config = AutoConfig.for_model(values.pop("model_type"), **values)
    model = getattr(transformers, shape.architecture)(config).to(torch.bfloat16)
    model.save_pretrained(tmp_path / "theirs")
    assert _saved(ours) == _saved(tmp_path / "theirs")
    index = json.loads((ours / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    with safe_open(str(ours / index["weight_map"]["model.embed_tokens.weight" if "qwen" in name
                                                  else "model.text_model.embed_tokens.weight"]),
                   "pt") as f:
        names = f.keys()  # a safetensors file, not a dict
        key = next(k for k in names if k.endswith("embed_tokens.weight"))
        weights = f.get_tensor(key).float()
    assert weights.dtype == torch.float32 and 0.015 < weights.std().item() < 0.025
    assert json.loads((ours / "config.json").read_text())["architectures"] == [
        shape.architecture]
