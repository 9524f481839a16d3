"""Training examples: one image, question and four-stage answer turned into model inputs.

The prompt is the base's own chat template with the image first and the question after
it, exactly as the app renders it at inference (``models.families``: the image part, then
the text part, and the template's default system turn if it has one). The answer is the
rest of the rendered conversation: the four stages and the end-of-turn token, which the
model must learn to emit so that generation stops. Prompt and answer are tokenized
separately and concatenated, so the answer's tokens are the ones the model will sample
after llama.cpp has tokenized the prompt. The loss covers the answer's tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from models.errors import StagewiseError
from models.recipes.llava_cot.bases import Prompting

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = ["IGNORE", "Example", "PromptBuilder", "load_prompt_builder"]

IGNORE = -100
"""The label that keeps a token out of the loss (PyTorch's cross-entropy ignore index)."""

LIBMTMD_MIN_QWEN_TOKENS = 8
"""The fewest merged patches libmtmd resizes a Qwen-VL picture to
(``set_limit_image_tokens(8, 4096)`` in ``tools/mtmd/clip.cpp``); it ignores the base's
``preprocessor_config.json``, whose floor is higher (Qwen3-VL: 65,536 pixels, 64 tokens)."""


@dataclass
class Example:
    """Model inputs for one sample (batch of one).

    Attributes:
        inputs: ``input_ids``, ``attention_mask`` and the image tensors the model's
            ``forward`` takes (``pixel_values``, and ``image_grid_thw`` with
            ``mm_token_type_ids`` or ``token_type_ids`` by family).
        labels: ``IGNORE`` over the prompt, the token ids over the answer.
    """

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor

    @property
    def n_tokens(self) -> int:
        return int(self.labels.shape[-1])

    @property
    def n_answer_tokens(self) -> int:
        return int((self.labels != IGNORE).sum())


class PromptBuilder(Protocol):
    """Turns a sample into an :class:`Example`."""

    def example(self, image: Image.Image, question: str, answer: str) -> Example: ...


def _picture(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """The picture as the app hands it to libmtmd: upright (EXIF), RGB, and downscaled to
    the family's pixel cap (:func:`models.families.base.fit_picture`)."""
    from PIL import ImageOps

    from models.families.base import fit_picture

    return fit_picture(ImageOps.exif_transpose(image).convert("RGB"), max_pixels)


def _messages(question: str, answer: str | None) -> list[dict[str, Any]]:
    user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
    if answer is None:
        return [user]
    return [user, {"role": "assistant", "content": [{"type": "text", "text": answer}]}]


def _split(render: Any, question: str, answer: str) -> tuple[str, str]:
    """The prompt (ending at the assistant's turn) and the answer with its end of turn."""
    prompt = render(_messages(question, None), add_generation_prompt=True)
    full = render(_messages(question, answer), add_generation_prompt=False)
    if not full.startswith(prompt):
        raise StagewiseError("the chat template does not render the reply after the "
                             "generation prompt; its answer tokens cannot be told apart")
    return prompt, full[len(prompt):]


class QwenGridPrompts:
    """Qwen2.5-VL and Qwen3-VL: the image processor cuts the image into patches and
    ``<|image_pad|>`` is repeated once per merged 2x2 patch (as their processors do).

    Built from the tokenizer and the image processor alone: the processors also load a
    video processor, which needs torchvision, and video is not used here.

    ``mm_token_type_ids`` (1 on each image token, as the processors write it) is what
    transformers 5 derives the image tokens' 2-D M-RoPE positions from, the positions
    llama.cpp gives them: without it Qwen2.5-VL silently numbers the image tokens like
    text, and Qwen3-VL refuses the input.
    """

    image_token = "<|image_pad|>"

    def __init__(self, tokenizer: Any, image_processor: Any,
                 max_pixels: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.max_pixels = max_pixels

    def example(self, image: Image.Image, question: str, answer: str) -> Example:
        import torch

        def render(messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt)

        prompt, reply = _split(render, question, answer)
        # libmtmd's floor, not the processor's: a small picture is trained at the size the
        # app's llama.cpp gives it (both round to whole merged patches alike). The ceiling
        # stays the processor's; the family's pixel cap (``max_pixels``) is below both.
        side = self.image_processor.patch_size * self.image_processor.merge_size
        size = {"shortest_edge": LIBMTMD_MIN_QWEN_TOKENS * side * side,
                "longest_edge": self.image_processor.size["longest_edge"]}
        pixels = self.image_processor(images=[_picture(image, self.max_pixels)], size=size,
                                      return_tensors="pt")
        grid = pixels["image_grid_thw"]
        n_image = int(grid[0].prod()) // self.image_processor.merge_size ** 2
        if prompt.count(self.image_token) != 1:
            raise StagewiseError("the chat template did not write exactly one image "
                                 f"placeholder {self.image_token}")
        prompt = prompt.replace(self.image_token, self.image_token * n_image)
        prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        reply_ids = self.tokenizer(reply, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt_ids + reply_ids])
        labels = torch.tensor([[IGNORE] * len(prompt_ids) + reply_ids])
        image_id = self.tokenizer.convert_tokens_to_ids(self.image_token)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                  "pixel_values": pixels["pixel_values"], "image_grid_thw": grid,
                  "mm_token_type_ids": (ids == image_id).to(torch.int)}
        return Example(inputs, labels)


class ProcessorPrompts:
    """Bases whose processor handles images alone (Gemma 3: a fixed 256 image tokens and
    ``token_type_ids`` marking them for bidirectional attention)."""

    def __init__(self, processor: Any, max_pixels: int | None = None) -> None:
        self.processor = processor
        self.max_pixels = max_pixels

    def example(self, image: Image.Image, question: str, answer: str) -> Example:
        import torch

        def render(messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
            return self.processor.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt)

        prompt, reply = _split(render, question, answer)
        # The rendered template starts with its own ``{{ bos_token }}``: the tokenizer must
        # not add another (Gemma's adds ``<bos>`` by default; llama.cpp adds just one).
        encoded = self.processor(text=[prompt], images=[[_picture(image, self.max_pixels)]],
                                 return_tensors="pt", return_mm_token_type_ids=True,
                                 add_special_tokens=False)
        reply_ids = self.processor.tokenizer(reply, add_special_tokens=False)["input_ids"]
        n_prompt = encoded["input_ids"].shape[1]
        ids = torch.cat([encoded["input_ids"], torch.tensor([reply_ids])], dim=1)
        inputs = dict(encoded)
        inputs["input_ids"] = ids
        inputs["attention_mask"] = torch.ones_like(ids)
        if "token_type_ids" in inputs:
            inputs["token_type_ids"] = torch.cat(
                [inputs["token_type_ids"], torch.zeros((1, len(reply_ids)), dtype=torch.long)],
                dim=1)
        labels = torch.tensor([[IGNORE] * n_prompt + reply_ids])
        return Example(inputs, labels)


def load_prompt_builder(base_dir: Path, prompting: Prompting,
                        max_pixels: int | None = None) -> PromptBuilder:
    """The prompt builder for a downloaded base (or a merged model) in ``base_dir``.

    Args:
        base_dir: The model folder.
        prompting: How the base builds image prompts (see :class:`~.bases.Base`).
        max_pixels: Downscale pictures to this many pixels, as the app does for the
            model's family (``FamilyAdapter.max_image_pixels``); None keeps them.
    """
    if prompting == "qwen-grid":
        from transformers import AutoImageProcessor, AutoTokenizer

        return QwenGridPrompts(AutoTokenizer.from_pretrained(base_dir),
                               AutoImageProcessor.from_pretrained(base_dir, use_fast=False),
                               max_pixels)
    from transformers import AutoProcessor

    return ProcessorPrompts(AutoProcessor.from_pretrained(base_dir, use_fast=False), max_pixels)
