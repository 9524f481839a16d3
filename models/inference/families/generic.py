"""The fallback for families Stagewise does not know.

The prompt is built as before family adapters existed: llama.cpp's
``llama_chat_apply_template`` with the model's template (llama.cpp recognises the
common ones by pattern), and a plain-string user turn with the media marker first,
which libmtmd accepts for every projector. When llama.cpp does not know the template,
the engine renders it here instead, the same way.
"""

from __future__ import annotations

from stagewise.models.inference.families.base import FamilyAdapter

__all__ = ["GENERIC"]

GENERIC = FamilyAdapter(
    name="generic",
    content_parts=False,
    native_template=True,
)
