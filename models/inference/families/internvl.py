"""InternVL 2.5 / 3.

Facts (llama.cpp as vendored by llama-cpp-python 0.3.36, and transformers):

* ``clip.projector_type``: "internvl" (``tools/mtmd/clip-impl.h``). The text model is a
  Qwen2.5 or InternLM2 (``general.architecture`` "qwen2", "internlm2", ...), which says
  nothing about the family, so the projector decides.
* The ``-hf`` templates write ``<image>\\n`` for an image; InternVLProcessor expands
  ``<image>`` to ``<img>`` + ``<IMG_CONTEXT>`` x N + ``</img>``. libmtmd writes ``<img>``
  and ``</img>`` itself (``tools/mtmd/mtmd.cpp``), so ``<image>`` becomes the marker
  (and a pre-expanded ``<img><IMG_CONTEXT></img>`` would too).
* The original (non ``-hf``) templates take string content only; the image then goes
  first as ``<image>\\n``, as InternVL's own ``chat()`` writes it.
* Turns end with ``<|im_end|>``.
* The image is tiled (448x448) by libmtmd: no cap beyond the default.
"""

from __future__ import annotations

from stagewise.models.inference.families.base import FamilyAdapter

__all__ = ["INTERNVL"]

INTERNVL = FamilyAdapter(
    name="internvl",
    projector_types=frozenset({"internvl"}),
    image_placeholders=("<img><IMG_CONTEXT></img>", "<IMG_CONTEXT>", "<image>"),
    string_image_prefix="<image>\n",
    stop_tokens=("<|im_end|>",),
    several_images=True,
)
