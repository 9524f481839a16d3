"""Whether a model writes the four stages by itself, as its GGUF declares."""

from __future__ import annotations

import enum

__all__ = ["STAGE_MODE_KEY", "StageMode"]

STAGE_MODE_KEY = "stagewise.stage_mode"
"""The GGUF metadata key a LLaVA-CoT fine-tune carries, with the value "native"."""


class StageMode(enum.StrEnum):
    """How the model is asked for the stages.

    NATIVE: the model was fine-tuned on LLaVA-CoT data and emits the stages by itself.
    PROMPTED: any other model; the question is followed by
    :data:`stagewise.models.stages.PROMPTED_INSTRUCTION`.
    """

    NATIVE = "native"
    PROMPTED = "prompted"
