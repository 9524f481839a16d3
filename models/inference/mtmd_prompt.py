"""Prompts with images as libmtmd holds them: the image, and the prompt split into chunks."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass, field

from llama_cpp import mtmd_cpp as mtmd

from stagewise.models.errors import EngineError
from stagewise.models.inference.images import PreparedImage
from stagewise.models.inference.tokenizer import Tokenizer

__all__ = ["Bitmap", "Chunk", "TokenizedPrompt", "split_after_images", "split_at_image",
           "tokenize_prompt"]


@dataclass(frozen=True)
class Chunk:
    """One piece of a tokenized prompt: text tokens, or an image's embeddings."""

    is_image: bool
    n_pos: int
    n_tokens: int
    tokens: tuple[int, ...] = ()


@dataclass
class TokenizedPrompt:
    """A prompt as libmtmd splits it into text and image chunks, then the text after the
    image as Stagewise tokenizes it
    (:meth:`~stagewise.models.inference.tokenizer.Tokenizer.tokenize_plain`); owns the native
    chunks.

    Attributes:
        handle: libmtmd's chunks: the prompt up to and including the image (with the
            tokens libmtmd puts right after it, such as ``<|vision_end|>``).
        chunks: The same, read into Python.
        extra: The tokens of the text after the image.
    """

    handle: mtmd.mtmd_input_chunks_p
    chunks: list[Chunk] = field(default_factory=list)
    extra: tuple[int, ...] = ()

    @property
    def n_pos(self) -> int:
        return sum(c.n_pos for c in self.chunks) + len(self.extra)

    @property
    def n_tokens(self) -> int:
        return sum(c.n_tokens for c in self.chunks) + len(self.extra)

    @property
    def image_tokens(self) -> int:
        """Tokens the prompt's images take (libmtmd's count of their embeddings)."""
        return sum(c.n_tokens for c in self.chunks if c.is_image)

    @property
    def media_end(self) -> int:
        """Index of the first chunk after the last image (0 when there is no image)."""
        last = max((i for i, c in enumerate(self.chunks) if c.is_image), default=-1)
        return last + 1

    @property
    def shared_pos(self) -> int:
        """Positions up to the end of the last image: the part shared with other prompts."""
        return sum(c.n_pos for c in self.chunks[: self.media_end])

    @property
    def image_end(self) -> list[int]:
        """The text tokens libmtmd puts after the last image (empty for many families)."""
        return [t for c in self.chunks[self.media_end :] for t in c.tokens]

    def tail_tokens(self) -> list[int]:
        """Text tokens after the last image."""
        return self.image_end + list(self.extra)

    def close(self) -> None:
        if self.handle:
            mtmd.mtmd_input_chunks_free(self.handle)
            self.handle = None


class Bitmap:
    """The images of one question handed to libmtmd (one, or several in order); keep it for
    as long as prompts about them are built."""

    def __init__(self, images: PreparedImage | Sequence[PreparedImage]) -> None:
        self.images = (images,) if isinstance(images, PreparedImage) else tuple(images)
        self.handles: list[mtmd.mtmd_bitmap_p] = []
        for image in self.images:
            data = (ctypes.c_ubyte * len(image.rgb)).from_buffer_copy(image.rgb)
            handle = mtmd.mtmd_bitmap_init(image.width, image.height, data)
            if not handle:
                self.close()
                raise EngineError(f"{image.source}: libmtmd could not take the image")
            self.handles.append(handle)

    @property
    def count(self) -> int:
        """How many images: the prompt has as many media markers."""
        return len(self.images)

    def close(self) -> None:
        for handle in self.handles:
            mtmd.mtmd_bitmap_free(handle)
        self.handles = []

    def __enter__(self) -> Bitmap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def split_after_images(text: str, marker: str, count: int) -> tuple[str, str]:
    """``text`` cut after its ``count``-th media ``marker``: (up to and including it, the
    rest); ("", text) when it has fewer markers (or ``count`` is 0)."""
    end = 0
    for _ in range(count):
        at = text.find(marker, end)
        if at < 0:
            return "", text
        end = at + len(marker)
    return (text[:end], text[end:]) if count else ("", text)


def split_at_image(mctx: mtmd.mtmd_context_p, text: str, bitmap: Bitmap | None
                   ) -> TokenizedPrompt:
    """libmtmd's tokenization of ``text``, which ends at its images' last media marker (or
    has no image when ``bitmap`` is None), the images preprocessed but not encoded: one
    ``mtmd_tokenize`` call with every marker and bitmap, in order.

    Raises:
        EngineError: libmtmd refused the prompt or the image.
    """
    handle = mtmd.mtmd_input_chunks_init()
    raw = text.encode("utf-8")
    native = mtmd.mtmd_input_text()
    native.text = raw
    native.text_len = len(raw)
    native.add_special = True
    native.parse_special = True
    n_bitmaps = bitmap.count if bitmap is not None else 0
    bitmaps = (mtmd.mtmd_bitmap_p_ctypes * max(n_bitmaps, 1))()
    for i in range(n_bitmaps):
        bitmaps[i] = bitmap.handles[i]
    rc = mtmd.mtmd_tokenize(mctx, handle, ctypes.byref(native), bitmaps, n_bitmaps)
    result = TokenizedPrompt(handle)
    if rc != 0:
        result.close()
        problem = {1: "the number of images does not match the prompt's markers",
                   2: "the image could not be preprocessed"}.get(rc, f"error {rc}")
        raise EngineError(f"libmtmd could not tokenize the prompt: {problem}")
    for i in range(mtmd.mtmd_input_chunks_size(handle)):
        chunk = mtmd.mtmd_input_chunks_get(handle, i)
        kind = mtmd.mtmd_input_chunk_get_type(chunk)
        n_tokens = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
        n_pos = mtmd.mtmd_input_chunk_get_n_pos(chunk)
        tokens: tuple[int, ...] = ()
        if kind == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
            count = ctypes.c_size_t(0)
            ptr = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
            tokens = tuple(ptr[: count.value])
        result.chunks.append(Chunk(kind != mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT, n_pos, n_tokens,
                                   tokens))
    return result


def tokenize_prompt(mctx: mtmd.mtmd_context_p, tokenizer: Tokenizer, marker: str, prompt: str,
                    bitmap: Bitmap | None, plain: Sequence[str] = ()) -> TokenizedPrompt:
    """Split a prompt into text and image chunks (preprocessing, not encoding, the image).

    libmtmd tokenizes the prompt up to the last image's media ``marker`` (one marker per
    image of ``bitmap``); the text after it goes through :meth:`Tokenizer.tokenize_plain`,
    so that ``plain`` texts in it (the user's question, say) stay text even where they
    spell a control token such as ``<|im_end|>``. Every family's template puts the images
    before the question.

    Raises:
        EngineError: libmtmd refused the prompt or the image, or the prompt is empty.
    """
    head, after = split_after_images(prompt, marker, bitmap.count if bitmap else 0)
    if bitmap is not None and bitmap.count > 1 and not head:
        raise EngineError(f"the prompt has fewer places for images than the {bitmap.count} "
                          "images asked about")
    result = split_at_image(mctx, head, bitmap if head else None)
    result.extra = tuple(tokenizer.tokenize_plain(after, plain))
    if not result.chunks and not result.extra:
        result.close()
        raise EngineError("the prompt is empty")
    return result
