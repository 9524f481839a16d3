"""Images through Pillow, safely: refuse what cannot or should not be decoded, normalise the rest.

Every problem with an input image becomes an :class:`~stagewise.models.errors.ImageError` naming the
source. The size limit is checked from the header, before any pixel data is decoded. Pillow's
global settings (``Image.MAX_IMAGE_PIXELS``, ``ImageFile.LOAD_TRUNCATED_IMAGES``, the warning
filters) are read, never changed. The original file is only read.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import math
import os
import re
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import ExifTags, Image, ImageOps

from stagewise.models.errors import ImageError

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_IMAGES",
    "MAX_PIXELS",
    "MAX_SIDE",
    "READABLE_FORMATS",
    "ImageHeader",
    "Images",
    "PreparedImage",
    "decode_preview",
    "image_list",
    "image_suffixes",
    "inspect_image",
    "load_image",
    "read_image_file",
]

MAX_PIXELS = 64_000_000
"""Images with more pixels than this are refused before decoding."""

MAX_SIDE = 2048
"""Images are downscaled (keeping the aspect ratio) so the longer side is at most this."""

MAX_FILE_BYTES = 200 * 1024 * 1024
"""Files (or byte strings) larger than this are refused before reading."""

_FORMATS = (
    "PNG",
    "JPEG",
    "MPO",
    "GIF",
    "WEBP",
    "BMP",
    "DIB",
    "TIFF",
    "PPM",
    "ICO",
    "QOI",
    "JPEG2000",
    "AVIF",
)
"""Formats Pillow may try, in this order. Formats with weak signatures (TGA) or that run
external programs (EPS runs Ghostscript) are left out."""

READABLE_FORMATS = "PNG, JPEG, GIF, WebP, BMP, TIFF, PPM, ICO, QOI, JPEG 2000, AVIF"
"""The formats Stagewise reads, as a person would list them."""

# Exceptions Pillow's decoders raise on broken data, besides the ones named in the code.
# Warning is there for programs that turn warnings into errors: Pillow warns about bad data.
_DECODE_ERRORS = (
    Warning,
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    OverflowError,
)

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_WHITE = (255, 255, 255)


@dataclass(frozen=True)
class PreparedImage:
    """An image ready for a vision encoder.

    Attributes:
        rgb: ``width * height * 3`` bytes, RGB, row-major, top row first.
        width: Width after orientation and downscaling.
        height: Height after orientation and downscaling.
        original_width: Width of the original image, as displayed (after EXIF orientation).
        original_height: Height of the original image, as displayed.
        source: The file path, or a label such as ``"<bytes>"`` or ``"<clipboard>"``.
        sha256: Hex SHA-256 of the original bytes (file content), for content addressing.
    """

    rgb: bytes = field(repr=False)
    width: int
    height: int
    original_width: int
    original_height: int
    source: str
    sha256: str

    @property
    def downscaled(self) -> bool:
        """Whether the image was made smaller than the original."""
        return (self.width, self.height) != (self.original_width, self.original_height)


def load_image(
    source: str | os.PathLike[str] | bytes,
    *,
    max_pixels: int = MAX_PIXELS,
    max_side: int = MAX_SIDE,
    name: str | None = None,
) -> PreparedImage:
    """Read, check, orient, convert to RGB and downscale an image.

    Args:
        source: A file path, or the encoded image itself as ``bytes`` (e.g. from the clipboard).
        max_pixels: Refuse images with more pixels than this (checked before decoding).
            Pillow's own decompression-bomb limit still applies above it.
        max_side: Downscale so that the longer side is at most this many pixels.
        name: The label to show for ``bytes`` input (default ``"<bytes>"``); ignored for paths.

    Returns:
        The prepared image.

    Raises:
        ImageError: The file is missing or unreadable, is not an image Stagewise can read here, is
            corrupt or truncated, or is too large.
        ValueError: ``max_pixels`` or ``max_side`` is not positive.
    """
    if max_pixels <= 0 or max_side <= 0:
        raise ValueError("max_pixels and max_side must be positive")
    label, data = _read_source(source, name)
    digest = hashlib.sha256(data).hexdigest()
    image, original = _decode(label, data, max_pixels, max_side)
    image = _downscale(image, max_side)
    return PreparedImage(
        rgb=image.tobytes(),
        width=image.width,
        height=image.height,
        original_width=original[0],
        original_height=original[1],
        source=label,
        sha256=digest,
    )


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says, read without decoding its pixels."""

    format: str  # Pillow's name: "PNG", "JPEG", ...
    width: int  # as stored, before any EXIF orientation
    height: int


def read_image_file(path: str | os.PathLike[str], name: str | None = None) -> bytes:
    """The bytes of an image file, refusing folders, devices, empty and oversized files.

    Args:
        path: The file.
        name: How to name it in messages (default: the whole path).

    Raises:
        ImageError: The file cannot be read or is refused.
    """
    path = Path(os.fspath(path))
    return _read_file(path, name or str(path))


def inspect_image(data: bytes, name: str, *, max_pixels: int = MAX_PIXELS) -> ImageHeader:
    """Check encoded image bytes as far as can be done without decoding the pixels.

    Refuses what :func:`load_image` would refuse before decoding: an empty or oversized
    input, a format Stagewise does not read, a header that cannot be parsed, too many pixels.

    Raises:
        ImageError: Named ``name``, saying why.
    """
    _check_byte_count(name, len(data))
    with _pillow_errors(name, max_pixels), \
            Image.open(io.BytesIO(data), formats=_available_formats()) as opened:
        header = ImageHeader(opened.format or "?", *opened.size)
    _check_pixels(name, (header.width, header.height), max_pixels)
    return header


@functools.cache
def image_suffixes() -> frozenset[str]:
    """File name endings (".png", ".jpg", ...) of the formats Stagewise reads."""
    formats = set(_available_formats())
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in formats)


def decode_preview(data: bytes, name: str, max_side: int) -> Image.Image:
    """Decode an image to show it: upright, its longer side at most ``max_side``.

    Transparency is kept (mode RGBA or RGB); high bit depths are scaled to 8 bits. JPEG is
    reduced while decoding, so a huge photo never exists at full size in memory.

    Raises:
        ImageError: The data is not a readable image, is corrupt, or is too large.
    """
    with _pillow_errors(name, MAX_PIXELS):
        image = Image.open(io.BytesIO(data), formats=_available_formats())
        _check_pixels(name, image.size, MAX_PIXELS)
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        if image.format in ("JPEG", "MPO"):
            _draft(image, max_side)
        image.load()
        if max(image.size) > max_side:
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
        if orientation in range(2, 9):
            image = ImageOps.exif_transpose(image)
        if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
            image = _high_depth_to_l(image)
        alpha = image.mode in _ALPHA_MODES or "transparency" in image.info
        return image.convert("RGBA" if alpha else "RGB")


Images = PreparedImage | tuple[PreparedImage, ...]
"""What one question is about: an image, or several in the order they were given (each
encoded once, all in one prompt, for the model families whose chat template takes several:
:attr:`~stagewise.models.inference.families.FamilyAdapter.several_images`)."""

MAX_IMAGES = 8
"""The most images one question may be about."""


def image_list(images: Images) -> tuple[PreparedImage, ...]:
    """``images`` as a tuple, one image or several.

    Raises:
        ImageError: There are none, or more than :data:`MAX_IMAGES`.
    """
    if isinstance(images, PreparedImage):
        return (images,)
    found = tuple(images)
    if not found:
        raise ImageError("<no image>", "a question needs at least one image")
    if len(found) > MAX_IMAGES:
        raise ImageError(f"{len(found)} images",
                         f"one question takes at most {MAX_IMAGES} images")
    return found


def describe_images(images: Images) -> str:
    """The image's source, or the sources of several joined with " + "."""
    return " + ".join(image.source for image in image_list(images))


# --------------------------------------------------------------------------------------------
# Reading


def _read_source(source: str | os.PathLike[str] | bytes, name: str | None) -> tuple[str, bytes]:
    """The display label and the encoded bytes of ``source``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "<bytes>"
        data = bytes(source)
        _check_byte_count(label, len(data))
        return label, data
    path = Path(os.fspath(source))
    return str(path), _read_file(path, str(path))


def _check_byte_count(label: str, size: int) -> None:
    """Refuse empty or oversized input."""
    if size == 0:
        raise ImageError(label, "the file is empty")
    if size > MAX_FILE_BYTES:
        raise ImageError(
            label,
            f"the file is {size / 2**20:,.0f} MiB; images larger than "
            f"{MAX_FILE_BYTES // 2**20} MiB are refused",
        )


def _read_file(path: Path, label: str) -> bytes:
    """The whole content of ``path``, or an ImageError (naming ``label``) saying why not."""
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ImageError(label, "this is a folder, not an image file")
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(label, "this is not a regular file (a device, pipe or socket)")
        _check_byte_count(label, info.st_size)
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ImageError(label, "no such file") from None
    except PermissionError:
        raise ImageError(label, "permission denied: the file cannot be read") from None
    except OSError as error:
        raise ImageError(label, f"the file cannot be read ({error.strerror or error})") from None
    except ValueError:
        raise ImageError(label, "this is not a valid file name") from None
    _check_byte_count(label, len(data))
    return data


# --------------------------------------------------------------------------------------------
# Decoding


@contextlib.contextmanager
def _pillow_errors(label: str, max_pixels: int) -> Iterator[None]:
    """Turn what Pillow raises on unreadable, broken or huge images into ImageError."""
    try:
        yield
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageError(
            label, f"not an image Stagewise can read (readable formats: {READABLE_FORMATS})"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(label, _too_large_message(str(error), max_pixels)) from None
    except MemoryError:
        raise ImageError(label, "not enough memory to decode the image") from None
    except _DECODE_ERRORS as error:
        raise ImageError(label, f"the image data is corrupt or truncated ({error})") from None


def _decode(
    label: str, data: bytes, max_pixels: int, max_side: int
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode ``data`` into an upright RGB image, reduced on decode where the format allows.

    Returns:
        The image and the original (upright) size.
    """
    with _pillow_errors(label, max_pixels):
        return _decode_image(label, data, max_pixels, max_side)


def _decode_image(
    label: str, data: bytes, max_pixels: int, max_side: int
) -> tuple[Image.Image, tuple[int, int]]:
    """The body of :func:`_decode`, which turns Pillow's exceptions into ImageError."""
    # A BytesIO holds no OS resource, so the image needs no closing; closing it would
    # destroy the decoded pixels when no conversion made a new image.
    opened = Image.open(io.BytesIO(data), formats=_available_formats())
    _check_pixels(label, opened.size, max_pixels)
    header_size = opened.size
    if opened.format in ("JPEG", "MPO"):
        _draft(opened, max_side)
    opened.load()
    image = _to_rgb(_upright(opened))
    swapped = image.size == opened.size[::-1] != opened.size
    original = header_size[::-1] if swapped else header_size
    return image, original


def _available_formats() -> tuple[str, ...]:
    """The formats of ``_FORMATS`` this Pillow build has."""
    Image.init()
    return tuple(name for name in _FORMATS if name in Image.OPEN)


def _check_pixels(label: str, size: tuple[int, int], max_pixels: int) -> None:
    """Refuse an empty image or one with more than ``max_pixels`` pixels."""
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(label, f"the image has no pixels ({width}×{height})")
    if width * height > max_pixels:
        raise ImageError(
            label,
            f"the image is too large: {width}×{height} = {width * height:,} pixels; "
            f"the limit is {max_pixels:,} pixels",
        )


def _too_large_message(pillow_message: str, max_pixels: int) -> str:
    """A message for Pillow's decompression-bomb refusal, which gives only the pixel count."""
    match = re.search(r"\((\d+) pixels\)", pillow_message)
    if match is None:
        return f"the image is too large to decode safely (the limit is {max_pixels:,} pixels)"
    return f"the image is too large: {int(match[1]):,} pixels; the limit is {max_pixels:,} pixels"


def _draft(image: Image.Image, max_side: int) -> None:
    """Let the JPEG decoder reduce by 1/2, 1/4 or 1/8 while keeping the longer side >= max_side."""
    longest = max(image.size)
    if longest <= max_side:
        return
    scale = max_side / longest
    wanted = (math.ceil(image.width * scale), math.ceil(image.height * scale))
    image.draft("RGB", wanted)


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, if any (only the first frame of animations is kept)."""
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    if orientation in range(2, 9):
        return ImageOps.exif_transpose(image)
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any mode to RGB; transparency is composited on white."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        image = _high_depth_to_l(image)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "RGB":
        return image
    return image.convert("RGB")


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit integer or float grey to 8 bits (Pillow's convert would clip)."""
    is_16_bit = image.mode.startswith("I;16")
    if image.mode != "F":
        image = image.convert("I")
    low, high = image.getextrema()
    if is_16_bit or (low >= 0 and 255 < high <= 65535):
        scale, offset = 255 / 65535, 0.0
    elif low >= 0 and high <= 255:
        scale, offset = 1.0, 0.0
    elif high > low:
        scale, offset = 255 / (high - low), -low * 255 / (high - low)
    else:
        scale, offset = 0.0, 0.0
    return image.point(lambda value: value * scale + offset).convert("L")


def _downscale(image: Image.Image, max_side: int) -> Image.Image:
    """Shrink ``image`` so its longer side is ``max_side`` (keeping the aspect ratio)."""
    longest = max(image.size)
    if longest <= max_side:
        return image
    if image.width >= image.height:
        size = (max_side, max(1, round(image.height * max_side / image.width)))
    else:
        size = (max(1, round(image.width * max_side / image.height)), max_side)
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
