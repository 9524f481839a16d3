"""The history's image files: extensions and MIME types of stored originals, thumbnails."""

from __future__ import annotations

import io

from PIL import Image

from stagewise.models.inference.images import PreparedImage

__all__ = ["MIME_TYPES", "THUMBNAIL_SIZE", "image_extension"]

THUMBNAIL_SIZE = 160

MIME_TYPES: dict[str, str] = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
    "ico": "image/vnd.microsoft.icon",
    "qoi": "image/qoi",
    "jp2": "image/jp2",
    "j2k": "image/jp2",
    "avif": "image/avif",
    "ppm": "image/x-portable-anymap",
    "bin": "application/octet-stream",
}
"""MIME type of each extension :func:`image_extension` gives."""


def image_extension(data: bytes) -> str:
    """The file extension (no dot) for encoded image bytes, from their signature.

    Args:
        data: The encoded image.

    Returns:
        One of the keys of :data:`MIME_TYPES`; ``"bin"`` for an unknown signature.
    """
    signatures = (
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"\xff\xd8\xff", "jpg"),
        (b"GIF87a", "gif"),
        (b"GIF89a", "gif"),
        (b"II*\x00", "tiff"),
        (b"MM\x00*", "tiff"),
        (b"BM", "bmp"),
        (b"qoif", "qoi"),
        (b"\x00\x00\x01\x00", "ico"),
        (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jp2"),
        (b"\xff\x4f\xff\x51", "j2k"),
    )
    for magic, ext in signatures:
        if data.startswith(magic):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:12] in (b"ftypavif", b"ftypavis"):
        return "avif"
    if len(data) > 2 and data[:1] == b"P" and data[1:2] in b"123456" and data[2:3].isspace():
        return "ppm"
    return "bin"


def _thumbnail_png(image: PreparedImage) -> bytes:
    """A PNG thumbnail (at most THUMBNAIL_SIZE a side) made from the prepared RGB pixels."""
    picture = Image.frombytes("RGB", (image.width, image.height), image.rgb)
    picture.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    out = io.BytesIO()
    picture.save(out, "PNG")
    return out.getvalue()
