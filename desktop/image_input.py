"""Images given to the window, checked and decoded for display (no widgets).

An image comes as a file (opened, dropped or pasted) or as encoded data (dropped or pasted).
:func:`load_file` and :func:`load_bytes` check it the way :mod:`stagewise.models.inference.images`
checks it, with its limits and wording: the file size before reading, the pixel count from the
header before decoding, and then the pixel data itself. A refused input raises :class:`Refused`,
whose message is shown as it is. An accepted one is an :class:`ImageInput`, the original
bytes untouched, and the image decoded to show it. Files are only ever read.

For display, an image is decoded at most :data:`MAX_DISPLAY_SIDE` pixels on its longer side.
PNG, WebP, TIFF and PPM go through :class:`~PySide6.QtGui.QImageReader` with a scaled size (its
PNG reader scales row by row, without the full-size image in memory); Qt reports broken data in
these formats. Other formats go through Pillow, JPEG with reduced decoding: Qt quietly shows a
truncated JPEG, GIF, BMP or ICO as grey, where :func:`stagewise.models.inference.images.load_image`
refuses it.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from PIL import Image
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMimeData, QSize, Qt
from PySide6.QtGui import QImage, QImageReader

from stagewise.models.errors import ImageError
from stagewise.models.inference.images import (
    decode_preview,
    image_suffixes,
    inspect_image,
    read_image_file,
)

__all__ = [
    "CLIPBOARD_NAME", "DROP", "DROPPED_NAME", "MAX_DISPLAY_SIDE", "OPEN", "PASTE", "Action",
    "ImageInput", "Loaded", "Refused", "has_image_data", "image_data", "load_bytes",
    "load_file", "looks_like_image",
]

MAX_DISPLAY_SIDE = 4096
"""Images are decoded for display with their longer side at most this many pixels."""

CLIPBOARD_NAME = "<clipboard>"
"""The name of an image pasted as image data rather than as a file."""

DROPPED_NAME = "<dropped image>"
"""The name of an image dropped as image data rather than as a file."""

_QT_FORMATS = frozenset({"PNG", "WEBP", "TIFF", "PPM"})
"""Formats decoded for display by Qt: it reports truncated or corrupt data in these."""

_RAW_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp")
"""Encoded image MIME types taken from a drop or the clipboard as they are."""


@dataclass(frozen=True)
class ImageInput:
    """An image the person gave, as given.

    Attributes:
        data: The original encoded bytes (file content, or the pasted or dropped image data).
        name: The file name, or :data:`CLIPBOARD_NAME` / :data:`DROPPED_NAME` / a caller's label.
        path: The file the image came from, if any.
        width: Width of the original image as displayed (after EXIF orientation).
        height: Height of the original image as displayed.
        format: Pillow's name for the format, such as ``"PNG"`` or ``"JPEG"``.
    """

    data: bytes
    name: str
    path: Path | None
    width: int
    height: int
    format: str

    def __repr__(self) -> str:
        """Everything but the bytes, which are only counted."""
        return (
            f"ImageInput(name={self.name!r}, path={self.path!r}, width={self.width}, "
            f"height={self.height}, format={self.format!r}, data=<{len(self.data)} bytes>)"
        )


class Refused(Exception):
    """An input that is not taken; the message is shown to the person as it is."""


class Action(NamedTuple):
    """How an input arrived, for the wording of messages."""

    imperative: str
    participle: str


DROP = Action("drop", "dropped")
PASTE = Action("paste", "pasted")
OPEN = Action("choose", "opened")


@dataclass(frozen=True)
class Loaded:
    """An accepted input and the image decoded to show it."""

    input: ImageInput
    display: QImage


def load_file(path: Path, action: Action) -> Loaded:
    """Read and check the image file at ``path``.

    Raises:
        Refused: The path is a folder, cannot be read, or holds no usable image.
    """
    name = path.name or str(path)
    try:
        is_folder = stat.S_ISDIR(path.stat().st_mode)
    except (OSError, ValueError):
        is_folder = False  # read_image_file says what is wrong
    if is_folder:
        raise Refused(f"{name} is a folder: {action.imperative} an image file")
    try:
        data = read_image_file(path, name)
    except ImageError as error:
        raise Refused(str(error)) from None
    return load_bytes(data, name, path)


def load_bytes(data: bytes, name: str, path: Path | None) -> Loaded:
    """Check the header of ``data``, then decode it for display.

    Raises:
        Refused: The data is empty, too large, not a readable image, or corrupt.
    """
    try:
        header = inspect_image(data, name)
        display = _decode_for_display(data, name, header.format)
    except ImageError as error:
        raise Refused(str(error)) from None
    width, height = _upright_size((header.width, header.height), display)
    image_input = ImageInput(
        data=data, name=name, path=path, width=width, height=height, format=header.format
    )
    return Loaded(input=image_input, display=display)


def _decode_for_display(data: bytes, name: str, image_format: str) -> QImage:
    """Decode ``data`` upright, its longer side at most :data:`MAX_DISPLAY_SIDE`.

    Raises:
        ImageError: The pixel data is corrupt or truncated.
    """
    if image_format in _QT_FORMATS:
        image = _decode_with_qt(data)
        if image is not None:
            return image
    return _to_qimage(decode_preview(data, name, MAX_DISPLAY_SIDE))


def _decode_with_qt(data: bytes) -> QImage | None:
    """Decode with QImageReader at a reduced size where needed; None if Qt cannot."""
    buffer = QBuffer()
    buffer.setData(QByteArray(data))
    buffer.open(QIODevice.OpenModeFlag.ReadOnly)
    try:
        reader = QImageReader(buffer)
        reader.setAutoTransform(True)
        if not reader.canRead():
            return None
        size = reader.size()  # before the EXIF transformation, as setScaledSize wants it
        if size.isValid() and max(size.width(), size.height()) > MAX_DISPLAY_SIDE:
            limit = QSize(MAX_DISPLAY_SIDE, MAX_DISPLAY_SIDE)
            reader.setScaledSize(size.scaled(limit, Qt.AspectRatioMode.KeepAspectRatio))
        image = reader.read()
    finally:
        buffer.close()
    return None if image.isNull() else image


def _to_qimage(image: Image.Image) -> QImage:
    """A QImage copy of an RGB or RGBA Pillow image (what decode_preview returns)."""
    has_alpha = image.mode == "RGBA"
    channels = 4 if has_alpha else 3
    image_format = QImage.Format.Format_RGBA8888 if has_alpha else QImage.Format.Format_RGB888
    raw = image.tobytes()
    return QImage(raw, image.width, image.height, image.width * channels, image_format).copy()


def _upright_size(header_size: tuple[int, int], display: QImage) -> tuple[int, int]:
    """The original size as displayed: the header size, swapped if decoding turned it."""
    width, height = header_size
    turned = width != height and (display.width() > display.height()) != (width > height)
    return (height, width) if turned else (width, height)


def _png_bytes(image: QImage) -> bytes:
    """``image`` encoded as PNG."""
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return bytes(buffer.data().data())


def image_data(mime: QMimeData) -> bytes | None:
    """Encoded image bytes from ``mime``: as given if possible, else the image as PNG."""
    for mime_type in _RAW_IMAGE_TYPES:
        if mime.hasFormat(mime_type):
            data = bytes(mime.data(mime_type).data())
            if data:
                return data
    if mime.hasImage():
        image = QImage(mime.imageData())
        if not image.isNull():
            return _png_bytes(image)
    return None


def has_image_data(mime: QMimeData) -> bool:
    """Whether ``mime`` carries image data (not a file)."""
    return mime.hasImage() or any(mime.hasFormat(kind) for kind in _RAW_IMAGE_TYPES)


def looks_like_image(path: Path) -> bool:
    """Whether a dragged path probably is an image (by its name only: nothing is read)."""
    return path.suffix.lower() in image_suffixes()
