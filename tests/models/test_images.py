"""Tests for stagewise.models.inference.images: loading images safely, with real files written to
tmp_path."""

from __future__ import annotations

import hashlib
import io
import os
import random
import struct
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import stagewise.models.inference.images as images
from stagewise.models.errors import ImageError, StagewiseError
from stagewise.models.inference.images import (
    MAX_PIXELS,
    ImageHeader,
    PreparedImage,
    decode_preview,
    inspect_image,
    load_image,
    read_image_file,
)

REPO = Path(__file__).resolve().parents[2]
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def pixel(image: PreparedImage, x: int, y: int) -> tuple[int, int, int]:
    offset = (y * image.width + x) * 3
    red, green, blue = image.rgb[offset : offset + 3]
    return red, green, blue


def close_to(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 8) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def save(image: Image.Image, path: Path, **options: object) -> Path:
    image.save(path, **options)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_header_only_png(path: Path, width: int, height: int) -> Path:
    """A valid PNG header claiming ``width``×``height`` (1-bit grey) with almost no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )
    return path


def noisy(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """An RGB image of random pixels (so that its encoding is not tiny)."""
    rng = random.Random(seed)
    return Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))


def two_colour(size: tuple[int, int]) -> Image.Image:
    """Left half red, right half blue."""
    image = Image.new("RGB", size, RED)
    image.paste(BLUE, (size[0] // 2, 0, size[0], size[1]))
    return image


# --------------------------------------------------------------------------------------------
# Good images


def test_plain_png(tmp_path: Path) -> None:
    path = save(two_colour((40, 20)), tmp_path / "a.png")
    image = load_image(path)
    assert (image.width, image.height) == (40, 20)
    assert (image.original_width, image.original_height) == (40, 20)
    assert len(image.rgb) == 40 * 20 * 3
    assert pixel(image, 0, 0) == RED
    assert pixel(image, 39, 19) == BLUE
    assert image.source == str(path)
    assert not image.downscaled


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = save(two_colour((40, 20)), tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    image = load_image(path)
    assert (image.width, image.height) == (20, 40)
    assert (image.original_width, image.original_height) == (20, 40)
    assert close_to(pixel(image, 10, 5), RED, 40)  # the left half is now on top
    assert close_to(pixel(image, 10, 35), BLUE, 40)
    assert not image.downscaled


def test_original_file_is_not_modified(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 8
    path = save(noisy((300, 200)), tmp_path / "keep.jpg", exif=exif.tobytes())
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    load_image(path, max_side=100)
    assert path.read_bytes() == before
    assert path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.jpg"]


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    source = Image.new("RGBA", (3, 1))
    source.putdata([(255, 0, 0, 0), (0, 0, 255, 255), (255, 0, 0, 128)])
    image = load_image(save(source, tmp_path / "alpha.png"))
    assert pixel(image, 0, 0) == WHITE
    assert pixel(image, 1, 0) == BLUE
    assert close_to(pixel(image, 2, 0), (255, 127, 127), 2)


def test_la_is_composited_on_white(tmp_path: Path) -> None:
    source = Image.new("LA", (2, 1))
    source.putdata([(0, 0), (0, 255)])
    image = load_image(save(source, tmp_path / "la.png"))
    assert pixel(image, 0, 0) == WHITE
    assert pixel(image, 1, 0) == (0, 0, 0)


def test_palette_with_transparency(tmp_path: Path) -> None:
    source = Image.new("P", (2, 1))
    source.putpalette([0, 255, 0, 255, 0, 0])  # index 0 green, index 1 red
    source.putdata([0, 1])
    path = save(source, tmp_path / "p.png", transparency=0)
    image = load_image(path)
    assert pixel(image, 0, 0) == WHITE
    assert pixel(image, 1, 0) == RED
    plain = load_image(save(source, tmp_path / "p.gif"))
    assert pixel(plain, 0, 0) == (0, 255, 0)


def test_grey_and_bilevel(tmp_path: Path) -> None:
    grey = load_image(save(Image.new("L", (2, 2), 100), tmp_path / "l.png"))
    assert pixel(grey, 1, 1) == (100, 100, 100)
    bilevel = Image.new("1", (2, 1))
    bilevel.putdata([0, 255])
    image = load_image(save(bilevel, tmp_path / "one.png"))
    assert pixel(image, 0, 0) == (0, 0, 0)
    assert pixel(image, 1, 0) == WHITE


def test_cmyk(tmp_path: Path) -> None:
    source = Image.new("CMYK", (2, 1))
    source.putdata([(0, 0, 0, 0), (255, 0, 0, 0)])
    image = load_image(save(source, tmp_path / "cmyk.tif"))
    assert pixel(image, 0, 0) == WHITE
    assert pixel(image, 1, 0) == (0, 255, 255)
    jpeg = load_image(save(Image.new("CMYK", (16, 16), (0, 0, 0, 0)), tmp_path / "cmyk.jpg"))
    assert close_to(pixel(jpeg, 8, 8), WHITE)


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    source = Image.new("I;16", (3, 1))
    source.putdata([0, 32896, 65535])
    image = load_image(save(source, tmp_path / "deep.png"))
    assert pixel(image, 0, 0) == (0, 0, 0)
    assert close_to(pixel(image, 1, 0), (128, 128, 128), 1)
    assert pixel(image, 2, 0) == WHITE


def test_animated_gif_gives_the_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), BLUE)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    image = load_image(path)
    assert (image.width, image.height) == (8, 8)
    assert pixel(image, 4, 4) == RED


@pytest.mark.parametrize(
    ("size", "expected"),
    [((4000, 3000), (2048, 1536)), ((3000, 4000), (1536, 2048)), ((2048, 10), (2048, 10))],
)
def test_downscaling(tmp_path: Path, size: tuple[int, int], expected: tuple[int, int]) -> None:
    path = save(two_colour(size), tmp_path / "big.png")
    image = load_image(path)
    assert (image.width, image.height) == expected
    assert (image.original_width, image.original_height) == size
    assert image.downscaled is (size != expected)
    assert len(image.rgb) == expected[0] * expected[1] * 3
    assert close_to(pixel(image, 0, 0), RED)
    assert close_to(pixel(image, expected[0] - 1, expected[1] - 1), BLUE)


def test_jpeg_downscaling_uses_reduced_decoding(tmp_path: Path) -> None:
    path = save(two_colour((6000, 100)), tmp_path / "wide.jpg", quality=90)
    image = load_image(path)
    assert (image.width, image.height) == (2048, 34)
    assert (image.original_width, image.original_height) == (6000, 100)
    assert close_to(pixel(image, 10, 17), RED, 40)
    assert close_to(pixel(image, 2040, 17), BLUE, 40)


def test_custom_max_side(tmp_path: Path) -> None:
    image = load_image(save(two_colour((400, 300)), tmp_path / "a.png"), max_side=100)
    assert (image.width, image.height) == (100, 75)


def test_bytes_input_and_sha256(tmp_path: Path) -> None:
    path = save(noisy((30, 20)), tmp_path / "n.png")
    data = path.read_bytes()
    expected = hashlib.sha256(data).hexdigest()
    from_path, again = load_image(path), load_image(str(path))
    from_bytes = load_image(data)
    assert from_path.sha256 == again.sha256 == from_bytes.sha256 == expected
    assert from_bytes.source == "<bytes>"
    assert load_image(bytearray(data), name="<clipboard>").source == "<clipboard>"
    assert from_bytes.rgb == from_path.rgb


def test_sha256_is_of_the_original_bytes_not_the_pixels(tmp_path: Path) -> None:
    source = noisy((16, 16))
    png = load_image(save(source, tmp_path / "x.png"))
    bmp = load_image(save(source, tmp_path / "x.bmp"))
    assert png.rgb == bmp.rgb
    assert png.sha256 != bmp.sha256


def test_repr_leaves_out_the_pixels(tmp_path: Path) -> None:
    image = load_image(save(noisy((64, 64)), tmp_path / "n.png"))
    assert "rgb" not in repr(image)
    assert len(repr(image)) < 400


# --------------------------------------------------------------------------------------------
# Bad input


def test_huge_image_is_refused_from_the_header(tmp_path: Path) -> None:
    path = write_header_only_png(tmp_path / "huge.png", 30000, 30000)
    assert path.stat().st_size < 200
    start = time.perf_counter()
    with pytest.raises(ImageError) as caught:
        load_image(path)
    assert time.perf_counter() - start < 1.0
    message = str(caught.value)
    assert str(path) in message
    assert "900,000,000 pixels" in message
    assert f"{MAX_PIXELS:,}" in message


def test_image_just_over_our_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    path = write_header_only_png(tmp_path / "big.png", 8001, 8000)  # 64,008,000 pixels
    with pytest.raises(ImageError, match=r"8001×8000 = 64,008,000 pixels; the limit is 64,000,000"):
        load_image(path)


def test_max_pixels_argument(tmp_path: Path) -> None:
    path = save(noisy((100, 100)), tmp_path / "n.png")
    with pytest.raises(ImageError, match="10,000 pixels; the limit is 5,000"):
        load_image(path, max_pixels=5000)
    assert load_image(path, max_pixels=10_000).width == 100


def test_pillow_global_state_is_left_alone(tmp_path: Path) -> None:
    limit, filters = Image.MAX_IMAGE_PIXELS, list(warnings.filters)
    with pytest.raises(ImageError):
        load_image(write_header_only_png(tmp_path / "huge.png", 30000, 30000))
    load_image(save(noisy((10, 10)), tmp_path / "n.png"))
    assert limit == Image.MAX_IMAGE_PIXELS
    assert warnings.filters == filters


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with pytest.raises(ImageError, match="not an image Stagewise can read") as caught:
        load_image(path)
    assert caught.value.source == str(path)
    assert str(path) in str(caught.value)


def test_random_bytes(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(5000)
    with pytest.raises(ImageError, match="not an image Stagewise can read"):
        load_image(data)
    path = tmp_path / "random.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageError, match=r"random\.jpg"):
        load_image(path)


def test_eps_is_not_handed_to_ghostscript(tmp_path: Path) -> None:
    path = tmp_path / "doc.eps"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(ImageError, match="not an image Stagewise can read"):
        load_image(path)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".gif", ".webp"])
def test_truncated_image(tmp_path: Path, suffix: str) -> None:
    whole = save(noisy((200, 150)), tmp_path / f"whole{suffix}")
    data = whole.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated") as caught:
        load_image(cut)
    assert str(cut) in str(caught.value)


def test_cut_right_after_the_header(tmp_path: Path) -> None:
    data = save(noisy((50, 50)), tmp_path / "whole.png").read_bytes()
    with pytest.raises(ImageError):
        load_image(data[:40])


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(ImageError, match="no such file") as caught:
        load_image(path)
    assert caught.value.source == str(path)
    assert isinstance(caught.value, StagewiseError)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "pipe.png"
    os.mkfifo(path)
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(path)


def test_invalid_file_name() -> None:
    with pytest.raises(ImageError, match="not a valid file name"):
        load_image("bad\0name.png")


def test_empty_file_and_empty_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(path)
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")


def test_file_over_the_byte_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 1000)
    path = save(noisy((100, 100)), tmp_path / "n.png")
    with pytest.raises(ImageError, match="refused"):
        load_image(path)
    with pytest.raises(ImageError, match="refused"):
        load_image(path.read_bytes())


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_unreadable_file(tmp_path: Path) -> None:
    path = save(noisy((10, 10)), tmp_path / "locked.png")
    path.chmod(0)
    try:
        with pytest.raises(ImageError, match="permission denied"):
            load_image(path)
    finally:
        path.chmod(0o644)


def test_bad_limits_are_programming_errors(tmp_path: Path) -> None:
    path = save(noisy((10, 10)), tmp_path / "n.png")
    with pytest.raises(ValueError):
        load_image(path, max_side=0)
    with pytest.raises(ValueError):
        load_image(path, max_pixels=-1)


def _encoded_samples() -> list[bytes]:
    samples = []
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"):
        buffer = io.BytesIO()
        noisy((24, 16), seed=len(samples)).save(buffer, format=fmt)
        samples.append(buffer.getvalue())
    return samples


SAMPLES = _encoded_samples()


@st.composite
def damaged_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(1, len(data)))])


@pytest.mark.filterwarnings("error")  # Pillow's warnings about bad data must become ImageError too
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_images() | st.binary(max_size=300))
def test_damaged_data_raises_only_image_error(data: bytes) -> None:
    try:
        image = load_image(data)
    except ImageError:
        return
    assert len(image.rgb) == image.width * image.height * 3


# --------------------------------------------------------------------------------------------
# In a separate interpreter


def test_bad_files_do_not_crash_the_interpreter(tmp_path: Path) -> None:
    huge = write_header_only_png(tmp_path / "huge.png", 30000, 30000)
    text = tmp_path / "text.png"
    text.write_text("hello")
    code = (
        "import sys\n"
        "from stagewise.models.errors import ImageError\n"
        "from stagewise.models.inference.images import load_image\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        load_image(path)\n"
        "    except ImageError as error:\n"
        "        print('refused:', error)\n"
        "    else:\n"
        "        sys.exit(3)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(huge), str(text)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert "900,000,000 pixels" in lines[0]
    assert "not an image Stagewise can read" in lines[1]


def test_inspect_image_reads_the_header_only(tmp_path):
    huge = write_header_only_png(tmp_path / "huge.png", 20_000, 20_000)
    with pytest.raises(ImageError, match="too large"):
        inspect_image(huge.read_bytes(), "huge.png")
    small = write_header_only_png(tmp_path / "small.png", 300, 200)
    assert inspect_image(small.read_bytes(), "small.png") == ImageHeader("PNG", 300, 200)
    with pytest.raises(ImageError, match=r"notes\.txt: not an image Stagewise can read"):
        inspect_image(b"just words", "notes.txt")
    with pytest.raises(ImageError, match="the file is empty"):
        inspect_image(b"", "empty.png")


def test_decode_preview_keeps_alpha_and_shrinks(tmp_path):
    rgba = save(Image.new("RGBA", (1000, 500), (255, 0, 0, 128)), tmp_path / "a.png")
    preview = decode_preview(rgba.read_bytes(), "a.png", 100)
    assert (preview.mode, preview.size) == ("RGBA", (100, 50))
    data = rgba.read_bytes()
    with pytest.raises(ImageError, match="corrupt or truncated"):
        decode_preview(data[: len(data) // 2], "a.png", 100)


def test_read_image_file_names_the_file_as_asked(tmp_path):
    with pytest.raises(ImageError, match=r"^gone\.png: no such file$"):
        read_image_file(tmp_path / "gone.png", "gone.png")
    with pytest.raises(ImageError, match="this is a folder"):
        read_image_file(tmp_path)
