"""The base models the LLaVA-CoT recipe can fine-tune: all run by llama.cpp's libmtmd.

Each base names how its prompts are built for training (:mod:`.inputs`), which layers
get LoRA adapters, and what a full run on LLaVA-CoT-100k needs. Those GPU figures are
estimates, not measurements (no GPU run has been made yet): one epoch of about 99k
samples of about 1,200 tokens (image tokens included; Gemma 3's fixed 256 image tokens
make about 700), at about 5 x parameters FLOPs per token (LoRA's backward skips the
weight gradients; gradient checkpointing adds a forward), at 300 TFLOP/s on an H100 and
60 TFLOP/s on an RTX 4090 (about a third of their bf16 peaks, for one-sample steps of
varying length). Memory: bf16 weights plus activations and logits of one such sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["BASES", "DEFAULT_BASE", "LORA_TARGETS", "Base", "get_base"]

Prompting = Literal["qwen-grid", "processor"]

LORA_TARGETS = (r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj"
                r"|down_proj)")
"""LoRA goes on the language model's attention and MLP projections only: the vision
tower and its projector (whose blocks also have ``*_proj`` layers) stay as they are,
so the mmproj the recipe writes is the base's own."""


@dataclass(frozen=True)
class Base:
    """A base model.

    Attributes:
        key: The name on the command line.
        repo: The Hugging Face repository of the instruct model.
        family: Stagewise's family for the resulting GGUF pair (see
            stagewise.models.inference.families).
        prompting: "qwen-grid": the tokenizer and image processor, with each
            ``<|image_pad|>`` repeated once per merged patch (Qwen2.5-VL and Qwen3-VL; their
            processors need torchvision only for video); "processor": the base's own
            processor (Gemma 3).
        params: Parameters, for the card ("3.8B").
        licence: The base's licence.
        gpu_hours: Estimated hours for one epoch of LLaVA-CoT-100k on one H100 and on
            one RTX 4090 (None: it does not fit 24 GB).
        gpu_memory_gb: Estimated peak GPU memory for that run.
    """

    key: str
    repo: str
    family: str
    prompting: Prompting
    params: str
    licence: str
    gpu_hours: tuple[float, float | None]
    gpu_memory_gb: int


BASES: dict[str, Base] = {b.key: b for b in (
    Base("qwen2.5-vl-3b", "Qwen/Qwen2.5-VL-3B-Instruct", "qwen2.5-vl", "qwen-grid", "3.8B",
         "Qwen Research License (non-commercial)", (2.1, 10.4), 16),
    Base("qwen2.5-vl-7b", "Qwen/Qwen2.5-VL-7B-Instruct", "qwen2.5-vl", "qwen-grid", "8.3B",
         "Apache-2.0", (4.6, None), 26),
    Base("qwen3-vl-4b", "Qwen/Qwen3-VL-4B-Instruct", "qwen3-vl", "qwen-grid", "4.4B",
         "Apache-2.0", (2.4, 12.1), 17),
    Base("gemma-3-4b", "google/gemma-3-4b-it", "gemma3", "processor", "4.3B",
         "Gemma Terms of Use", (1.4, 6.9), 16),
)}
DEFAULT_BASE = "qwen2.5-vl-3b"


def get_base(key: str) -> Base:
    """The base named ``key``.

    Raises:
        KeyError: No such base; the message lists them.
    """
    try:
        return BASES[key]
    except KeyError:
        raise KeyError(f"unknown base {key!r}; one of {', '.join(BASES)}") from None
