"""Quantizing a GGUF text model with llama.cpp's own quantizer (``llama_model_quantize``).

Shared by the recipes that build model files (the demo model, the LLaVA-CoT fine-tune).
Projectors are not quantized here: they stay F16, as llama.cpp's converter writes them.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from stagewise.models.errors import StagewiseError

__all__ = ["QUANT_TYPES", "quantize"]

QUANT_TYPES = {"Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
               "Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K", "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
               "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "F16": "LLAMA_FTYPE_MOSTLY_F16"}
"""The quantizations offered, by name, to llama.cpp's ``llama_ftype`` constant."""


def quantize(source: Path, dest: Path, quant: str = "Q8_0", threads: int = 0) -> Path:
    """Quantize the text model ``source`` into ``dest``.

    The output is written under a temporary name and renamed when llama.cpp is done, so a
    failure (a full disk, say) leaves no half file behind. Tensors whose rows do not fit
    the type's blocks (k-quants need rows of a multiple of 256) get llama.cpp's fallback
    type, as its quantize tool does.

    Args:
        source: A GGUF text model, usually F16 or BF16.
        dest: Where the quantized model goes.
        quant: One of :data:`QUANT_TYPES`.
        threads: Threads for llama.cpp; 0 lets it choose.

    Returns:
        ``dest``.

    Raises:
        StagewiseError: An unknown type, a missing source, or llama.cpp reported a failure.
    """
    import llama_cpp

    if quant not in QUANT_TYPES:
        raise StagewiseError(f"unknown quantization {quant!r}; one of {', '.join(QUANT_TYPES)}")
    if not Path(source).is_file():
        raise StagewiseError(f"{source}: no such model to quantize")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_TYPES[quant])
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(),
                                        ctypes.byref(params))
    if rc != 0:
        partial.unlink(missing_ok=True)
        raise StagewiseError(f"llama.cpp could not quantize {source} to {quant} (error {rc}; "
                             "is the disk full?)")
    os.replace(partial, dest)
    return dest
