"""Each model family's differences in one place.

A :class:`FamilyAdapter` per family says how to find the family in GGUF metadata, how
to render a user turn with the family's chat template and put libmtmd's media marker
where the template puts the image, which tokens end a turn, how large an image to hand
to the encoder, and whether the text model uses M-RoPE. :func:`detect_family` picks the
adapter for a model; :data:`GENERIC` keeps llama.cpp's own template handling for
families not listed.

Modules: :mod:`~stagewise.models.inference.families.base` (the adapter, :func:`fit_pixels`),
:mod:`~stagewise.models.inference.families.qwen`, :mod:`~stagewise.models.inference.families.gemma`,
:mod:`~stagewise.models.inference.families.smolvlm`,
:mod:`~stagewise.models.inference.families.internvl`,
:mod:`~stagewise.models.inference.families.chatml`,
:mod:`~stagewise.models.inference.families.generic`,
:mod:`~stagewise.models.inference.families.registry`.
"""

from __future__ import annotations

from stagewise.models.inference.families.base import (
    DEFAULT_MAX_IMAGE_PIXELS,
    FamilyAdapter,
    close_thinking,
    fit_pixels,
    fit_tokens,
    opens_thinking,
)
from stagewise.models.inference.families.chatml import CHATML
from stagewise.models.inference.families.gemma import GEMMA3
from stagewise.models.inference.families.generic import GENERIC
from stagewise.models.inference.families.internvl import INTERNVL
from stagewise.models.inference.families.qwen import QWEN2_VL, QWEN3_VL
from stagewise.models.inference.families.registry import FAMILIES, detect_family, family_named
from stagewise.models.inference.families.smolvlm import SMOLVLM

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
    "fit_tokens",
    "opens_thinking",
]
