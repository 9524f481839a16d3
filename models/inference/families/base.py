"""What every model family adapter is made of, and the helpers they share.

A :class:`FamilyAdapter` describes how one family of vision-language models (Qwen2.5-VL,
Gemma 3, ...) wants its prompt built and its image sized. It is data plus two methods:
:meth:`FamilyAdapter.matches` (is this GGUF pair one of mine?) and
:meth:`FamilyAdapter.render_prompt` (the user turn, rendered with the model's own chat
template, with libmtmd's media marker where the template puts the image).

How the image gets into the prompt: the user message is rendered through the real
template with content ``[{"type": "image"}, {"type": "text", "text": ...}]``, exactly as
``transformers`` would be called. The template then writes the family's image
placeholder (Qwen: ``<|vision_start|><|image_pad|><|vision_end|>``, Gemma 3:
``<start_of_image>`` ...). In ``transformers`` the processor expands that placeholder
into the image tokens; here libmtmd does, at its media marker: ``mtmd_tokenize`` adds
the family's own begin/end-of-image tokens around the embeddings by itself
(``img_beg``/``img_end`` or the slice template in ``tools/mtmd/mtmd.cpp``,
``mtmd_context::init_vision``). So the whole placeholder, begin/end tokens included, is
replaced by the marker, and nothing is doubled.

Thinking models (Qwen3-VL-Thinking): their template opens a ``<think>`` block in the
generation prompt. The stage grammar must apply from the first generated token, so the
think block is closed in the prompt (``<think>\\n\\n</think>\\n\\n``, the same empty
block Qwen3's own templates write when thinking is switched off); the model then
answers at once, and the answer's stages are the visible reasoning. ``enable_thinking``
is also passed as False, which hybrid templates honour by themselves.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from PIL import Image

from stagewise.models.inference.chat_template import ChatTemplateError, render_chat
from stagewise.models.inference.images import MAX_SIDE, PreparedImage

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "THINK_CLOSE",
    "FamilyAdapter",
    "architecture",
    "chat_template",
    "close_thinking",
    "fit_pixels",
    "fit_tokens",
    "opens_thinking",
    "projector_type",
]

DEFAULT_MAX_IMAGE_PIXELS = MAX_SIDE * MAX_SIDE
"""Families whose encoder resizes to a fixed size or tiles: no tighter cap than the
longest side :func:`stagewise.models.inference.images.load_image` already allows."""

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def architecture(text_meta: Mapping[str, object]) -> str:
    """``general.architecture`` of the text model ("" when missing)."""
    value = text_meta.get("general.architecture")
    return value if isinstance(value, str) else ""


def projector_type(projector_meta: Mapping[str, object] | None) -> str:
    """``clip.projector_type`` (or the older ``clip.vision.projector_type``), "" if none."""
    if not projector_meta:
        return ""
    for key in ("clip.projector_type", "clip.vision.projector_type"):
        value = projector_meta.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def chat_template(text_meta: Mapping[str, object]) -> str | None:
    """``tokenizer.chat_template`` of the text model, if it has one."""
    value = text_meta.get("tokenizer.chat_template")
    return value if isinstance(value, str) and value.strip() else None


def opens_thinking(prompt: str) -> bool:
    """Whether a rendered prompt ends inside an open ``<think>`` block."""
    tail = prompt.rstrip()
    return tail.endswith(THINK_OPEN)


def close_thinking(prompt: str) -> str:
    """Close a ``<think>`` block left open at the end of ``prompt``.

    The result ends with ``<think>\\n\\n</think>\\n\\n``, the empty block Qwen3 templates
    write when thinking is off; a prompt without an open block is returned unchanged.
    """
    if not opens_thinking(prompt):
        return prompt
    head = prompt.rstrip()
    return f"{head}\n\n{THINK_CLOSE}\n\n"


def fit_pixels(image: PreparedImage, max_pixels: int | None) -> PreparedImage:
    """``image`` downscaled (keeping its aspect ratio) to at most ``max_pixels`` pixels.

    Returns the image itself when it already fits or ``max_pixels`` is None. The original
    size, source and hash are kept: it is the same picture, sent smaller.
    """
    if max_pixels is None or image.width * image.height <= max_pixels:
        return image
    source = Image.frombytes("RGB", (image.width, image.height), image.rgb)
    smaller = fit_picture(source, max_pixels)
    return dataclasses.replace(image, rgb=smaller.tobytes(), width=smaller.width,
                               height=smaller.height)


def fit_tokens(image: PreparedImage, max_tokens: int, side: int) -> PreparedImage:
    """``image`` resized so that a dynamic-resolution encoder makes at most ``max_tokens``
    tokens of it, where one token covers a ``side``×``side`` square of pixels (patch size ×
    patch merge).

    The encoder itself (libmtmd) rounds each side to a multiple of ``side``, up or down; so
    the picture is handed over already rounded, its aspect kept as near as whole tokens
    allow, and the count is exact: ``(width / side) × (height / side)`` at most
    ``max_tokens``. A picture that already fits, rounded up, is returned as it is.
    """
    if max_tokens < 1 or side < 1:
        raise ValueError("max_tokens and side must be positive")
    if math.ceil(image.width / side) * math.ceil(image.height / side) <= max_tokens:
        return image
    scale = math.sqrt(max_tokens * side * side / (image.width * image.height))
    columns = max(1, math.floor(image.width * scale / side))
    rows = max(1, math.floor(image.height * scale / side))
    while columns * rows > max_tokens:
        if columns >= rows:
            columns -= 1
        else:
            rows -= 1
    source = Image.frombytes("RGB", (image.width, image.height), image.rgb)
    smaller = source.resize((columns * side, rows * side), Image.Resampling.LANCZOS,
                            reducing_gap=3.0)
    return dataclasses.replace(image, rgb=smaller.tobytes(), width=smaller.width,
                               height=smaller.height)


def fit_picture(picture: Image.Image, max_pixels: int | None) -> Image.Image:
    """A PIL image downscaled as :func:`fit_pixels` does (the fine-tune recipe trains on
    pictures made this way, so that they match what the app hands to libmtmd)."""
    if max_pixels is None or picture.width * picture.height <= max_pixels:
        return picture
    if max_pixels < 1:
        raise ValueError("max_pixels must be positive")
    scale = math.sqrt(max_pixels / (picture.width * picture.height))
    width = max(1, math.floor(picture.width * scale))
    height = max(1, math.floor(picture.height * scale))
    while width * height > max_pixels:  # floor rounding can still leave one row too many
        if width >= height:
            width -= 1
        else:
            height -= 1
    return picture.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)


@dataclass(frozen=True)
class FamilyAdapter:
    """One model family's differences, in one place.

    Attributes:
        name: Short name ("qwen2.5-vl", "gemma3", ...), shown as ``Engine.family``.
        architectures: ``general.architecture`` values of the family's text models
            (``LLM_ARCH_NAMES`` in llama.cpp's ``src/llama-arch.cpp``) that identify it.
        projector_types: ``clip.projector_type`` values of its projectors
            (``PROJECTOR_TYPE_NAMES`` in ``tools/mtmd/clip-impl.h``).
        template_fingerprints: Strings that all appear in the family's chat templates; a
            weaker clue, used when neither the projector nor the architecture decides.
        image_placeholders: What the family's templates write for ``{"type": "image"}``,
            most specific first. The first one found in the rendered prompt is replaced
            by the media marker.
        marker_before: Text put before the marker (Gemma 3: the blank line its processor
            puts before ``<start_of_image>``).
        marker_after: Text put after the marker.
        string_image_prefix: For templates that only take string content: what stands
            for the image at the start of the user's text (then replaced like the
            template's own placeholder). None: such templates are not expected.
        content_parts: Render the user turn as a list of parts (transformers' multimodal
            form); False renders a plain string with the marker first, as llama.cpp does.
        stop_tokens: Text of the tokens that end the assistant's turn.
        max_image_pixels: Largest image (in pixels) handed to libmtmd; larger ones are
            downscaled first with :func:`fit_pixels`.
        token_side: For a dynamic-resolution encoder, the side in pixels of the square one
            image token covers (patch size × patch merge); None where every image takes
            the same tokens whatever its size (the encoder resizes or tiles it).
        image_token_limits: The fewest and most tokens the encoder makes of one image
            (libmtmd's own limits), which a user's cap is kept within.
        uses_mrope: The text model uses M-RoPE (positions in 3 or 4 sections).
        native_template: Build prompts with llama.cpp's ``llama_chat_apply_template``
            (the generic fallback) instead of rendering the Jinja template here.
        several_images: The family's chat template takes several images in one user turn
            (one image part each, in order), so one question may be about several
            (:meth:`render_prompt` with ``images`` above 1); families whose template takes
            string content, with the marker put in by hand, take one.
    """

    name: str
    architectures: frozenset[str] = frozenset()
    projector_types: frozenset[str] = frozenset()
    template_fingerprints: tuple[str, ...] = ()
    image_placeholders: tuple[str, ...] = ()
    marker_before: str = ""
    marker_after: str = ""
    string_image_prefix: str | None = None
    content_parts: bool = True
    stop_tokens: tuple[str, ...] = ()
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    token_side: int | None = None
    image_token_limits: tuple[int, int] = (1, 4096)
    uses_mrope: bool = False
    native_template: bool = False
    several_images: bool = False

    # -- detection --------------------------------------------------------------------

    def matches_projector(self, projector_meta: Mapping[str, object] | None) -> bool:
        return projector_type(projector_meta) in self.projector_types

    def matches_architecture(self, text_meta: Mapping[str, object]) -> bool:
        return architecture(text_meta) in self.architectures

    def matches_template(self, text_meta: Mapping[str, object]) -> bool:
        template = chat_template(text_meta)
        return bool(self.template_fingerprints) and template is not None and all(
            mark in template for mark in self.template_fingerprints)

    def matches(self, text_meta: Mapping[str, object],
                projector_meta: Mapping[str, object] | None) -> bool:
        """Whether a GGUF pair with this metadata belongs to the family.

        Args:
            text_meta: The text model's metadata (``GGUFInfo.metadata``).
            projector_meta: The projector's metadata, if known.
        """
        return (self.matches_projector(projector_meta) or self.matches_architecture(text_meta)
                or self.matches_template(text_meta))

    # -- prompts ----------------------------------------------------------------------

    # -- the image ----------------------------------------------------------------------

    @property
    def image_tokens_follow_size(self) -> bool:
        """Whether an image's token count follows its size (a user's cap then applies)."""
        return self.token_side is not None

    def image_token_cap(self, asked: int) -> int | None:
        """The most tokens an image may take when ``asked`` (0: the family's own cap) is
        the user's setting, kept within :attr:`image_token_limits`; None for a family
        whose token count does not follow the image's size."""
        if self.token_side is None:
            return None
        if asked <= 0:
            return max(1, self.max_image_pixels // (self.token_side * self.token_side))
        low, high = self.image_token_limits
        return min(max(asked, low), high)

    def fit_image(self, image: PreparedImage, image_tokens: int = 0) -> PreparedImage:
        """``image`` as it is handed to libmtmd: downscaled, its aspect kept, to the
        family's largest picture, or to ``image_tokens`` tokens where the user set a cap
        (0: none) and the family's token count follows the image's size."""
        if image_tokens > 0 and self.token_side is not None:
            cap = self.image_token_cap(image_tokens)
            assert cap is not None
            return fit_tokens(image, cap, self.token_side)
        return fit_pixels(image, self.max_image_pixels)

    def render_prompt(self, template: str | None, user_text: str, marker: str, *,
                      with_image: bool, bos_token: str = "", eos_token: str = "",
                      earlier: Sequence[tuple[str, str]] = (), system: str = "",
                      images: int = 1) -> str:
        """One user turn rendered with ``template``, ending where the assistant answers.

        With ``earlier`` turns the conversation is rendered in the template's multi-turn
        form: the image goes with the first user turn, so that the prompt up to the image's
        end is the same as a single question's (and the image kept in the engine can be
        reused), then each earlier question and answer, then ``user_text``.

        Args:
            template: The model's Jinja chat template.
            user_text: The text of the user turn (question and instructions).
            marker: libmtmd's media marker (``mtmd_default_marker()``).
            with_image: Put the image (the marker) before the text.
            bos_token: What ``{{ bos_token }}`` renders as. Leave empty when the
                tokenizer adds BOS itself (libmtmd tokenizes with ``add_special``).
            eos_token: What ``{{ eos_token }}`` renders as.
            earlier: Earlier turns of the conversation, oldest first: (the user's text, the
                assistant's answer).
            system: A system message before the conversation ("" for none).
            images: How many images the (first) user turn holds, each an image part in
                order, each placeholder then replaced by a marker.

        Returns:
            The prompt, with ``images`` markers when ``with_image`` (none otherwise),
            its generation prompt at the end, and any open ``<think>`` block closed.

        Raises:
            ChatTemplateError: There is no template, it fails, or it puts the image where
                it cannot be found.
        """
        if template is None:
            raise ChatTemplateError("the model has no chat template")
        context = {"bos_token": bos_token, "eos_token": eos_token, "enable_thinking": False}
        turns = [*earlier, (user_text, None)]
        count = images if with_image else 0
        if count > 1 and not self.several_images:
            raise ChatTemplateError(f"the {self.name} family's chat template takes one image "
                                    "per question")
        if self.content_parts:
            try:
                prompt = self._render_parts(template, turns, count, context, system)
            except ChatTemplateError:
                if self.string_image_prefix is None:
                    raise
                prompt = self._render_string(template, turns, count, context,
                                             self.string_image_prefix, system)
        else:
            prompt = self._render_string(template, turns, count, context, None, system)
        for _ in range(count):
            prompt = self._place_marker(prompt, marker)
        return close_thinking(prompt)

    def _render_parts(self, template: str, turns: Sequence[tuple[str, str | None]],
                      images: int, context: dict[str, object], system: str = "") -> str:
        messages: list[dict[str, object]] = []
        if system:
            messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
        for i, (user, answer) in enumerate(turns):
            parts: list[dict[str, str]] = [{"type": "image"}] * images if i == 0 else []
            parts.append({"type": "text", "text": user})
            messages.append({"role": "user", "content": parts})
            if answer is not None:
                messages.append({"role": "assistant",
                                 "content": [{"type": "text", "text": answer}]})
        return render_chat(template, messages, **context)

    def _render_string(self, template: str, turns: Sequence[tuple[str, str | None]],
                       images: int, context: dict[str, object],
                       image_prefix: str | None, system: str = "") -> str:
        messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
        for i, (user, answer) in enumerate(turns):
            content = user
            if images and i == 0:
                content = f"{image_prefix * images}{user}" if image_prefix is not None else (
                    f"{_PENDING}\n" * images + user)
            messages.append({"role": "user", "content": content})
            if answer is not None:
                messages.append({"role": "assistant", "content": answer})
        return render_chat(template, messages, **context)

    def _place_marker(self, prompt: str, marker: str) -> str:
        if _PENDING in prompt:
            return prompt.replace(_PENDING, marker, 1)
        for placeholder in self.image_placeholders:
            at = prompt.find(placeholder)
            if at >= 0:
                return (prompt[:at] + self.marker_before + marker + self.marker_after
                        + prompt[at + len(placeholder):])
        raise ChatTemplateError(
            f"the model's chat template did not write an image placeholder the {self.name} "
            "family uses, so the image has no place in the prompt")


_PENDING = "\x00stagewise-image\x00"
"""Stands for the marker in string content until the template has been rendered (the
marker itself goes in afterwards, so that a template cannot change or repeat it)."""
