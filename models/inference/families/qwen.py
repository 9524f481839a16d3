"""Qwen2-VL / Qwen2.5-VL and Qwen3-VL (Instruct and Thinking).

Facts (llama.cpp as vendored by llama-cpp-python 0.3.36):

* ``general.architecture``: "qwen2vl" for Qwen2-VL and Qwen2.5-VL text models,
  "qwen3vl" / "qwen3vlmoe" for Qwen3-VL (``src/llama-arch.cpp``).
* ``clip.projector_type``: "qwen2vl_merger", "qwen2.5vl_merger", "qwen3vl_merger"
  (``tools/mtmd/clip-impl.h``).
* The templates write ``<|vision_start|><|image_pad|><|vision_end|>`` for an image;
  libmtmd writes ``<|vision_start|>`` and ``<|vision_end|>`` around the embeddings
  itself (``tools/mtmd/mtmd.cpp``), so the whole triple becomes the marker.
* Turns end with ``<|im_end|>``.
* Dynamic resolution: the image is cut into 14x14 (Qwen2/2.5) or 16x16 (Qwen3)
  patches merged 2x2, one token per merged patch, up to 4096 tokens in libmtmd
  (``set_limit_image_tokens(8, 4096)`` in ``tools/mtmd/clip.cpp``). The cap here is
  1280 tokens (Qwen's own recommended ``max_pixels = 1280*28*28``), which keeps the
  prompt small enough for a beam of candidates in one context; a user's cap
  (``EngineSettings.image_tokens``) may raise it up to libmtmd's 4096 or lower it to
  its 8, and the picture is then handed over in whole 28×28 (32×32) squares.
* M-RoPE text positions.
* Qwen3-VL-Thinking's generation prompt opens ``<think>``;
:mod:`stagewise.models.inference.families.base`
  closes it (see there).
"""

from __future__ import annotations

from stagewise.models.inference.families.base import FamilyAdapter

__all__ = ["QWEN2_VL", "QWEN3_VL"]

_PLACEHOLDERS = ("<|vision_start|><|image_pad|><|vision_end|>", "<|image_pad|>")
_STOPS = ("<|im_end|>", "<|endoftext|>")

QWEN2_VL = FamilyAdapter(
    name="qwen2.5-vl",
    architectures=frozenset({"qwen2vl"}),
    projector_types=frozenset({"qwen2vl_merger", "qwen2.5vl_merger"}),
    template_fingerprints=("<|vision_start|><|image_pad|><|vision_end|>", "<|im_start|>"),
    image_placeholders=_PLACEHOLDERS,
    string_image_prefix="<|vision_start|><|image_pad|><|vision_end|>",
    stop_tokens=_STOPS,
    max_image_pixels=1280 * 28 * 28,
    token_side=28,
    image_token_limits=(8, 4096),
    uses_mrope=True,
    several_images=True,
)

QWEN3_VL = FamilyAdapter(
    name="qwen3-vl",
    architectures=frozenset({"qwen3vl", "qwen3vlmoe"}),
    projector_types=frozenset({"qwen3vl_merger"}),
    template_fingerprints=("<|vision_start|><|image_pad|><|vision_end|>", "render_content"),
    image_placeholders=_PLACEHOLDERS,
    string_image_prefix="<|vision_start|><|image_pad|><|vision_end|>",
    stop_tokens=_STOPS,
    max_image_pixels=1280 * 32 * 32,
    token_side=32,
    image_token_limits=(8, 4096),
    uses_mrope=True,
    several_images=True,
)
