"""Each model family's differences in one place.

A :class:`FamilyAdapter` per family says how to find the family in GGUF metadata, how
to render a user turn with the family's chat template and put libmtmd's media marker
where the template puts the image, which tokens end a turn, how large an image to hand
to the encoder, and whether the text model uses M-RoPE. :func:`detect_family` picks the
adapter for a model; :data:`GENERIC` keeps llama.cpp's own template handling for
families not listed.

Modules: :mod:`~models.families.base` (the adapter, :func:`fit_pixels`),
:mod:`~models.families.qwen`, :mod:`~models.families.gemma`,
:mod:`~models.families.smolvlm`, :mod:`~models.families.internvl`,
:mod:`~models.families.chatml`, :mod:`~models.families.generic`,
:mod:`~models.families.registry`.
"""

from __future__ import annotations

from models.families.base import (
    DEFAULT_MAX_IMAGE_PIXELS,
    FamilyAdapter,
    close_thinking,
    fit_pixels,
    opens_thinking,
)
from models.families.chatml import CHATML
from models.families.gemma import GEMMA3
from models.families.generic import GENERIC
from models.families.internvl import INTERNVL
from models.families.qwen import QWEN2_VL, QWEN3_VL
from models.families.registry import FAMILIES, detect_family, family_named
from models.families.smolvlm import SMOLVLM

__all__ = [
    "CHATML",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "FAMILIES",
    "GEMMA3",
    "GENERIC",
    "INTERNVL",
    "QWEN2_VL",
    "QWEN3_VL",
    "SMOLVLM",
    "FamilyAdapter",
    "close_thinking",
    "detect_family",
    "family_named",
    "fit_pixels",
    "opens_thinking",
]
