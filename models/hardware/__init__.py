"""What this computer has, what a model pair and a search need, and whether one fits the other.

Three steps, each usable on its own:

* :func:`detect_hardware` lists llama.cpp's backend devices (CPU, GPUs, accelerators) with
  their memory, through ggml's device API, and reads the RAM and CPU count of the machine.
* :func:`estimate_need` reads the headers of a text model and its projector (no weights are
  loaded) and estimates the bytes a run needs: weights, projector, KV cache and compute
  buffers, and the context (tokens) a search of a given beam width fills.
* :func:`plan_fit` decides where that goes: all on the GPU, some layers on the GPU and the
  rest in RAM, in RAM only, or nowhere, and when nowhere it says what would fit (a smaller
  quantization of the same model, a smaller context).

:func:`check_fit` chains the three for the engine's and the search's settings.

Modules: :mod:`~stagewise.models.hardware.devices` (detection),
:mod:`~stagewise.models.hardware.need` (estimates), :mod:`~stagewise.models.hardware.image_need`
(what one image costs), :mod:`~stagewise.models.hardware.fit` (placement plans).
"""

from __future__ import annotations

from stagewise.models.hardware.devices import Device, DeviceKind, Hardware, detect_hardware
from stagewise.models.hardware.fit import QUANT_BITS_PER_WEIGHT, Fit, check_fit, plan_fit
from stagewise.models.hardware.image_need import estimate_image_tokens
from stagewise.models.hardware.need import (
    Need,
    NeedDetail,
    estimate_need,
    kv_bytes_per_token,
    need_from_detail,
)

__all__ = [
    "QUANT_BITS_PER_WEIGHT",
    "Device",
    "DeviceKind",
    "Fit",
    "Hardware",
    "Need",
    "NeedDetail",
    "check_fit",
    "detect_hardware",
    "estimate_image_tokens",
    "estimate_need",
    "kv_bytes_per_token",
    "need_from_detail",
    "plan_fit",
]
