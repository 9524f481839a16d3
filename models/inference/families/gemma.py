"""Gemma 3.

Facts (llama.cpp as vendored by llama-cpp-python 0.3.36, and transformers):

* ``general.architecture``: "gemma3" (``src/llama-arch.cpp``); ``clip.projector_type``:
  "gemma3" (``tools/mtmd/clip-impl.h``).
* The template writes ``<start_of_image>`` for an image. Gemma3Processor turns it into
  ``"\\n\\n<start_of_image>" + 256 image tokens + "<end_of_image>\\n\\n"``
  (``full_image_sequence`` in transformers' ``processing_gemma3.py``); libmtmd writes
  ``<start_of_image>`` and ``<end_of_image>`` itself (``tools/mtmd/mtmd.cpp``), so the
  placeholder becomes ``"\\n\\n" + marker + "\\n\\n"``.
* Turns end with ``<end_of_turn>``; the template starts with ``{{ bos_token }}``, left
  empty because the tokenizer adds ``<bos>`` itself.
* The encoder takes a fixed 896x896 image (``mtmd_image_preprocessor_fixed_size``): no
  cap beyond the default.
"""

from __future__ import annotations

from stagewise.models.inference.families.base import FamilyAdapter

__all__ = ["GEMMA3"]

GEMMA3 = FamilyAdapter(
    name="gemma3",
    architectures=frozenset({"gemma3"}),
    projector_types=frozenset({"gemma3"}),
    template_fingerprints=("<start_of_image>", "<start_of_turn>"),
    image_placeholders=("<start_of_image>",),
    marker_before="\n\n",
    marker_after="\n\n",
    string_image_prefix="<start_of_image>",
    stop_tokens=("<end_of_turn>", "<eos>"),
    several_images=True,
)
