"""Picking the family adapter for a GGUF pair from its metadata."""

from __future__ import annotations

from collections.abc import Mapping

from stagewise.models.inference.families.base import FamilyAdapter
from stagewise.models.inference.families.chatml import CHATML
from stagewise.models.inference.families.gemma import GEMMA3
from stagewise.models.inference.families.generic import GENERIC
from stagewise.models.inference.families.internvl import INTERNVL
from stagewise.models.inference.families.qwen import QWEN2_VL, QWEN3_VL
from stagewise.models.inference.families.smolvlm import SMOLVLM

__all__ = ["FAMILIES", "detect_family", "family_named"]

FAMILIES: tuple[FamilyAdapter, ...] = (QWEN3_VL, QWEN2_VL, GEMMA3, SMOLVLM, INTERNVL, CHATML)
"""Known families, most specific first. :data:`GENERIC` takes whatever none claims."""


def detect_family(text_meta: Mapping[str, object],
                  projector_meta: Mapping[str, object] | None = None) -> FamilyAdapter:
    """The adapter for a text model and projector with this metadata.

    The projector type decides first (it names the vision encoder and so the image
    tokens), then the text model's architecture, then fingerprints in the chat template;
    :data:`~stagewise.models.inference.families.generic.GENERIC` when nothing matches.

    Args:
        text_meta: The text model's GGUF metadata (``general.architecture``,
            ``tokenizer.chat_template``, ...).
        projector_meta: The projector's GGUF metadata (``clip.projector_type``), if any.
    """
    for test in (lambda f: f.matches_projector(projector_meta),
                 lambda f: f.matches_architecture(text_meta),
                 lambda f: f.matches_template(text_meta)):
        for family in FAMILIES:
            if test(family):
                return family
    return GENERIC


def family_named(name: str) -> FamilyAdapter:
    """The adapter called ``name`` (KeyError if none)."""
    for family in (*FAMILIES, GENERIC):
        if family.name == name:
            return family
    raise KeyError(name)
