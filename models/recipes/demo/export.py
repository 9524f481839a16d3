"""Writes the trained demo model as a GGUF pair and quantizes the text model.

The text model and projector are written by :mod:`stagewise.models.build.gguf_writer` (the same
writer as the test pairs), in F16; llama.cpp's own quantizer (``llama_model_quantize``) then makes
the shipped text model. The projector stays F16, as llama.cpp's converter leaves them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stagewise.models.build.gguf_writer import Vocabulary, write_projector, write_text_model
from stagewise.models.build.quantize import quantize
from stagewise.models.recipes.demo.model import DemoModel, projector_tensors, text_tensors
from stagewise.models.recipes.demo.tokenizer import CHAT_TEMPLATE

F16_MODEL = "stagewise-demo-f16.gguf"


@dataclass(frozen=True)
class ExportedPair:
    f16_model: Path
    model: Path
    mmproj: Path


def export_pair(model: DemoModel, vocab: Vocabulary, out_dir: Path, *, quant: str = "Q8_0",
                name: str = "stagewise-demo",
                metadata: Sequence[tuple[str, str]] = ()) -> ExportedPair:
    """Writes ``out_dir/{name}-f16.gguf``, ``{name}-{quant}.gguf`` and
    ``mmproj-{name}-f16.gguf`` (for the demo: :data:`F16_MODEL`, ``DEMO_MODEL``,
    ``DEMO_MMPROJ``), with ``metadata`` in the text model besides its stage mode.

    Raises:
        StagewiseError: llama.cpp's quantizer failed.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    f16 = out_dir / f"{name}-f16.gguf"
    write_text_model(f16, model.spec.text, vocab, text_tensors(model, np.float16), name=name,
                     chat_template=CHAT_TEMPLATE, file_type=1,
                     extra=[("stagewise.stage_mode", "native"), *metadata])
    mmproj = out_dir / f"mmproj-{name}-f16.gguf"
    write_projector(mmproj, model.spec.vision_hyper(), projector_tensors(model, np.float16),
                    name=f"{name}-mmproj", file_type=1)
    quantized = out_dir / f"{name}-{quant}.gguf"
    quantize(f16, quantized, quant)
    return ExportedPair(f16, quantized, mmproj)


def load_pair(model_path: Path, mmproj_path: Path) -> DemoModel:
    """Rebuilds the PyTorch model from a written pair (quantized tensors are dequantized).

    Used to check a shipped pair against PyTorch without the training checkpoint.
    """
    import gguf
    import torch

    from stagewise.models.build.gguf_writer import TextHyper
    from stagewise.models.recipes.demo.spec import DemoSpec

    text, vision = gguf.GGUFReader(str(model_path)), gguf.GGUFReader(str(mmproj_path))

    def meta(reader: gguf.GGUFReader, key: str) -> object:
        return reader.get_field(key).contents()

    def tensors(reader: gguf.GGUFReader) -> dict[str, np.ndarray]:
        return {t.name: np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), np.float32)
                .reshape([int(n) for n in reversed(t.shape)]) for t in reader.tensors}

    hyper = TextHyper(
        n_embd=meta(text, "llama.embedding_length"), n_layer=meta(text, "llama.block_count"),
        n_head=meta(text, "llama.attention.head_count"),
        n_head_kv=meta(text, "llama.attention.head_count_kv"),
        n_ff=meta(text, "llama.feed_forward_length"),
        n_ctx_train=meta(text, "llama.context_length"),
        rms_eps=meta(text, "llama.attention.layer_norm_rms_epsilon"),
        rope_base=meta(text, "llama.rope.freq_base"))
    spec = DemoSpec(
        text=hyper, image_size=meta(vision, "clip.vision.image_size"),
        patch_size=meta(vision, "clip.vision.patch_size"),
        v_embd=meta(vision, "clip.vision.embedding_length"),
        v_blocks=meta(vision, "clip.vision.block_count") - 1,
        v_head=meta(vision, "clip.vision.attention.head_count"),
        v_ff=meta(vision, "clip.vision.feed_forward_length"),
        image_mean=tuple(meta(vision, "clip.vision.image_mean")),
        image_std=tuple(meta(vision, "clip.vision.image_std")))
    weights = tensors(text)
    model = DemoModel(spec, weights["token_embd.weight"].shape[0])
    names = dict(text_tensors(model)) | dict(projector_tensors(model))
    weights |= tensors(vision)
    state = {}
    for key, name in _state_names(model).items():
        state[key] = torch.from_numpy(weights[name].reshape(names[name].shape).copy())
    model.load_state_dict(state)
    return model.eval()


def _state_names(model: DemoModel) -> dict[str, str]:
    """PyTorch state-dict keys → GGUF tensor names (the inverse of the tensor writers)."""
    out = {"embed.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
           "output.weight": "output.weight"}
    text = {"attn_norm": "attn_norm", "q": "attn_q", "k": "attn_k", "v": "attn_v",
            "o": "attn_output", "ffn_norm": "ffn_norm", "gate": "ffn_gate", "up": "ffn_up",
            "down": "ffn_down"}
    for i in range(len(model.blocks)):
        out |= {f"blocks.{i}.{k}.weight": f"blk.{i}.{v}.weight" for k, v in text.items()}
    out |= {"vision.patch.weight": "v.patch_embd.weight", "vision.patch.bias": "v.patch_embd.bias",
            "vision.position": "v.position_embd.weight", "vision.mm0.weight": "mm.0.weight",
            "vision.mm0.bias": "mm.0.bias", "vision.mm2.weight": "mm.2.weight",
            "vision.mm2.bias": "mm.2.bias", "vision.pre_ln.weight": "v.pre_ln.weight",
            "vision.pre_ln.bias": "v.pre_ln.bias"}
    vit = {"q": "attn_q", "k": "attn_k", "v": "attn_v", "out": "attn_out", "ln1": "ln1",
           "ln2": "ln2", "up": "ffn_up", "down": "ffn_down"}
    for i in range(len(model.vision.blocks)):
        for k, v in vit.items():
            for part in ("weight", "bias"):
                out[f"vision.blocks.{i}.{k}.{part}"] = f"v.blk.{i}.{v}.{part}"
    return out
