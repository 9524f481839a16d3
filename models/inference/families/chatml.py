"""Any model with a ChatML template that no other family claims (the tiny test model).

The prompt is the same as llama.cpp's ``llama_chat_apply_template`` gives for a ChatML
template (see :mod:`stagewise.models.build.tiny_vlm`): a plain-string user turn with the media
marker first, ``<|im_start|>user\\n<marker>\\n<text><|im_end|>\\n<|im_start|>assistant\\n``, but
rendered with the model's own template, so that a ChatML variant (a default system
prompt, say) is kept.
"""

from __future__ import annotations

from stagewise.models.inference.families.base import FamilyAdapter

__all__ = ["CHATML"]

CHATML = FamilyAdapter(
    name="chatml",
    template_fingerprints=("<|im_start|>", "<|im_end|>"),
    content_parts=False,
    stop_tokens=("<|im_end|>",),
)
