"""A loaded model's prompts: one user turn rendered with the model's own chat template.

:class:`PromptRenderer` renders through the model family's adapter (the Jinja template
stored in the GGUF, :mod:`~stagewise.models.inference.chat_template`), or through
llama.cpp's ``llama_chat_apply_template`` for the generic family and for models without a
template, each falling back on the other.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from stagewise.models.errors import EngineError
from stagewise.models.inference.chat_template import ChatTemplateError
from stagewise.models.inference.families import GENERIC, FamilyAdapter
from stagewise.models.inference.llama_runtime import apply_builtin_template
from stagewise.models.inference.native_owners import ModelOwner
from stagewise.models.inference.tokenizer import Tokenizer

__all__ = ["PromptRenderer"]

log = logging.getLogger("stagewise.llama")


class PromptRenderer:
    """Renders user turns for one loaded model.

    Args:
        model: The loaded text model (llama.cpp's built-in templates read it).
        model_path: Its file, for messages.
        name: The model's name, for messages.
        adapter: The model family's adapter, picked from the GGUF metadata.
        template: The GGUF's Jinja chat template; None when it has none.
        tokenizer: The model's tokenizer (what BOS and EOS render as).
        media_marker: libmtmd's marker of where the image goes.
    """

    def __init__(self, model: ModelOwner, model_path: Path, name: str, adapter: FamilyAdapter,
                 template: str | None, tokenizer: Tokenizer, media_marker: str) -> None:
        self._model = model
        self._model_path = model_path
        self._name = name
        self.adapter = adapter
        self.template = template
        self.media_marker = media_marker
        self._bos_text, self._eos_text = tokenizer.template_specials()

    def chat_prompt(self, user_text: str, *, with_image: bool = True,
                    earlier: Sequence[tuple[str, str]] = (), system: str = "",
                    images: int = 1) -> str:
        """Render one user turn with the model's own chat template, ending at the reply.

        ``earlier`` turns (the user's text, the assistant's answer; oldest first) come
        before it, in the template's multi-turn form, the image in the first user turn;
        a ``system`` message, when given, before them all. ``images`` markers go where the
        template puts that many images (a family that takes one refuses more).

        The model family's adapter renders the Jinja template stored in the GGUF, with the
        media marker where that family's template puts the image. The generic adapter, and
        a model without a template, use llama.cpp's ``llama_chat_apply_template`` with the
        marker first; a template llama.cpp does not know is then rendered here, the same
        way. If the family's rendering fails, llama.cpp's is tried before giving up.

        Raises:
            ChatTemplateError: The template cannot be rendered, by either path, or the
                family takes one image and ``images`` is more.
            EngineError: No template at all, and llama.cpp has no default either.
        """
        adapter = self.adapter
        if with_image and images > 1 and not adapter.several_images:
            raise ChatTemplateError(
                f"{self._name} ({adapter.name} family) takes one image per question: its chat "
                "template has no place for several")
        if not adapter.native_template and self.template is not None:
            try:
                return self._render(adapter, user_text, with_image, earlier, system, images)
            except ChatTemplateError as error:
                log.warning("%s: %s; using llama.cpp's template handling", self._name, error)
                try:
                    return self.native_chat_prompt(user_text, with_image=with_image,
                                                   earlier=earlier, system=system,
                                                   images=images)
                except EngineError:
                    raise error from None
        try:
            return self.native_chat_prompt(user_text, with_image=with_image, earlier=earlier,
                                           system=system, images=images)
        except EngineError:
            if self.template is None:
                raise
            return self._render(GENERIC, user_text, with_image, earlier, system, images)

    def native_chat_prompt(self, user_text: str, *, with_image: bool = True,
                           earlier: Sequence[tuple[str, str]] = (), system: str = "",
                           images: int = 1) -> str:
        """The conversation through llama.cpp's ``llama_chat_apply_template``, the markers
        (one per image) first in the first user turn.

        Raises:
            EngineError: llama.cpp does not know the model's template.
        """
        markers = f"{self.media_marker}\n" * images
        if with_image and earlier:
            (first, answer), *rest = earlier
            earlier = [(f"{markers}{first}", answer), *rest]
        elif with_image:
            user_text = f"{markers}{user_text}"
        return apply_builtin_template(self._model.handle, user_text, self._model_path, earlier,
                                      system)

    def _render(self, adapter: FamilyAdapter, user_text: str, with_image: bool,
                earlier: Sequence[tuple[str, str]] = (), system: str = "",
                images: int = 1) -> str:
        return adapter.render_prompt(self.template, user_text, self.media_marker,
                                     with_image=with_image, bos_token=self._bos_text,
                                     eos_token=self._eos_text, earlier=earlier, system=system,
                                     images=images)
