"""SmolVLM / SmolVLM2 (Idefics3 architecture).

Facts (llama.cpp as vendored by llama-cpp-python 0.3.36):

* ``clip.projector_type``: "idefics3" (``tools/mtmd/clip-impl.h``). The text model is a
  SmolLM2 (``general.architecture`` "llama"), which says nothing about the family, so
  the projector or the template decides.
* The template writes ``<image>`` for an image (``User:<image>question``). libmtmd
  writes the whole Idefics3 image sequence itself (``<fake_token_around_image>``,
  ``<global-img>``, the ``<row_i_col_j>`` tiles: ``MTMD_SLICE_TMPL_IDEFICS3`` in
  ``tools/mtmd/mtmd.cpp``), so ``<image>`` becomes the marker.
* Turns end with ``<end_of_utterance>``.
* The image is tiled at the encoder's size by libmtmd: no cap beyond the default.
"""

from __future__ import annotations

from stagewise.models.inference.families.base import FamilyAdapter

__all__ = ["SMOLVLM"]

SMOLVLM = FamilyAdapter(
    name="smolvlm",
    projector_types=frozenset({"idefics3"}),
    template_fingerprints=("<end_of_utterance>", "<image>"),
    image_placeholders=("<image>",),
    string_image_prefix="<image>",
    stop_tokens=("<end_of_utterance>",),
    several_images=True,
)
