"""Training examples: one image, question and four-stage answer turned into model inputs.

The prompt is the base's own chat template with the image first and the question after
it, exactly as the app renders it at inference (``stagewise.models.inference.families``: the image
part, then the text part, and the template's default system turn if it has one). The answer is the
rest of the rendered conversation: the four stages and the end-of-turn token, which the
model must learn to emit so that generation stops. Prompt and answer are tokenized
separately and concatenated, so the answer's tokens are the ones the model will sample
after llama.cpp has tokenized the prompt. The loss covers the answer's tokens only.

Some LLaVA-CoT-100k records are conversations: follow-up questions about the same image,
each answered in four stages. They are trained as conversations, the loss on every
answer, each following the turns before it as the template renders them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from stagewise.models.errors import StagewiseError
from stagewise.models.recipes.llava_cot.bases import Prompting

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


Turns = Sequence[tuple[str, str]]
"""Follow-up (question, answer) turns of a conversation about the same image."""


class PromptBuilder(Protocol):
    """Turns a sample into an :class:`Example`."""

    def example(self, image: Image.Image, question: str, answer: str,
                follow_ups: Turns = ()) -> Example: ...


def _picture(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """The picture as the app hands it to libmtmd: upright (EXIF), RGB, and downscaled to
    the family's pixel cap (:func:`stagewise.models.inference.families.base.fit_picture`)."""
    from PIL import ImageOps

    from stagewise.models.inference.families.base import fit_picture

    return fit_picture(ImageOps.exif_transpose(image).convert("RGB"), max_pixels)


def _conversation(render: Any, question: str, answer: str,
                  follow_ups: Turns) -> list[tuple[str, bool]]:
    """The rendered conversation cut into consecutive pieces, each with whether it is the
    model's own (an answer and its end of turn: trained) or not (the prompts).

    The image goes in the first user turn. Each prompt piece ends with the template's
    generation prompt, so the model learns each answer from the place it starts at
    inference.

    Raises:
        StagewiseError: The template renders a later turn without repeating the earlier
            ones as they were (the answers' tokens could not be told apart).
    """
    pieces: list[tuple[str, bool]] = []
    messages: list[dict[str, Any]] = []
    done = ""
    for i, (q, a) in enumerate([(question, answer), *follow_ups]):
        content = [{"type": "text", "text": q}]
        messages.append({"role": "user",
                         "content": [{"type": "image"}, *content] if i == 0 else content})
        prompt = render(messages, add_generation_prompt=True)
        messages.append({"role": "assistant", "content": [{"type": "text", "text": a}]})
        full = render(messages, add_generation_prompt=False)
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise StagewiseError("the chat template does not render a conversation turn by "
                                 "turn; its answer tokens cannot be told apart")
        pieces += [(prompt[len(done):], False), (full[len(prompt):], True)]
        done = full
    return pieces


def _append_pieces(ids: list[int], labels: list[int], pieces: list[tuple[str, bool]],
                   tokenizer: Any) -> None:
    """Tokenize ``pieces`` one by one onto ``ids``, labelling the model's own."""
    for text, trained in pieces:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if trained else [IGNORE] * len(piece)


def _pad_token_types(inputs: dict[str, torch.Tensor], length: int) -> None:
    """Extend the image-token markers the processor wrote for the first prompt with zeros
    over the rest of the conversation (text)."""
    import torch

    for key in ("token_type_ids", "mm_token_type_ids"):
        if key in inputs:
            marks = inputs[key]
            extra = torch.zeros((1, length - marks.shape[1]), dtype=marks.dtype)
            inputs[key] = torch.cat([marks, extra], dim=1)


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

    def example(self, image: Image.Image, question: str, answer: str,
                follow_ups: Turns = ()) -> Example:
        import torch

        def render(messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt)

        (prompt, _), *rest = _conversation(render, question, answer, follow_ups)
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
        ids: list[int] = []
        labels: list[int] = []
        _append_pieces(ids, labels, [(prompt, False), *rest], self.tokenizer)
        tensor = torch.tensor([ids])
        image_id = self.tokenizer.convert_tokens_to_ids(self.image_token)
        inputs = {"input_ids": tensor, "attention_mask": torch.ones_like(tensor),
                  "pixel_values": pixels["pixel_values"], "image_grid_thw": grid,
                  "mm_token_type_ids": (tensor == image_id).to(torch.int)}
        return Example(inputs, torch.tensor([labels]))


class ProcessorPrompts:
    """Bases whose processor handles images alone (Gemma 3: a fixed 256 image tokens and
    ``token_type_ids`` marking them for bidirectional attention)."""

    def __init__(self, processor: Any, max_pixels: int | None = None) -> None:
        self.processor = processor
        self.max_pixels = max_pixels

    def example(self, image: Image.Image, question: str, answer: str,
                follow_ups: Turns = ()) -> Example:
        import torch

        def render(messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
            return self.processor.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt)

        (prompt, _), *rest = _conversation(render, question, answer, follow_ups)
        # The rendered template starts with its own ``{{ bos_token }}``: the tokenizer must
        # not add another (Gemma's adds ``<bos>`` by default; llama.cpp adds just one).
        encoded = self.processor(text=[prompt], images=[[_picture(image, self.max_pixels)]],
                                 return_tensors="pt", return_mm_token_type_ids=True,
                                 add_special_tokens=False)
        ids: list[int] = encoded["input_ids"][0].tolist()
        labels = [IGNORE] * len(ids)
        _append_pieces(ids, labels, rest, self.processor.tokenizer)
        inputs = dict(encoded)
        inputs["input_ids"] = torch.tensor([ids])
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
        _pad_token_types(inputs, len(ids))
        return Example(inputs, torch.tensor([labels]))


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
