"""Tests for stagewise.desktop.image_pane and the loading it uses (stagewise.desktop.image_input):
real files in tmp_path, real drops, the real clipboard."""

from __future__ import annotations

import io
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageFile
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import (
    QColor,
    QDragEnterEvent,
    QDragLeaveEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QWheelEvent,
)
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

import stagewise.desktop.image_input as image_input
import stagewise.models.inference.images as images
from stagewise.desktop.image_input import CLIPBOARD_NAME, DROPPED_NAME, MAX_DISPLAY_SIDE, ImageInput
from stagewise.desktop.image_pane import MAX_FIT_ENLARGE, ImagePane
from tests.models.test_images import save, write_header_only_png

COPY_OR_MOVE = Qt.DropAction.CopyAction | Qt.DropAction.MoveAction


# --------------------------------------------------------------------------------------------
# Helpers


def noisy(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """An RGB image of random pixels (so that its encoding is not tiny)."""
    rng = random.Random(seed)
    return Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))


def truncated(source: Path, target: Path) -> Path:
    """``target`` holding the first half of ``source``: the header is intact, the data cut."""
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def file_mime(*paths: Path) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path)) for path in paths])
    return mime


def drag_enter(pane: ImagePane, mime: QMimeData) -> QDragEnterEvent:
    event = QDragEnterEvent(
        QPoint(20, 20),
        COPY_OR_MOVE,
        mime,
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(pane, event)
    return event


def drop(pane: ImagePane, mime: QMimeData) -> QDropEvent:
    """A whole drag and drop: enter (which must be accepted), then drop."""
    assert drag_enter(pane, mime).isAccepted()
    event = QDropEvent(
        QPointF(20, 20),
        COPY_OR_MOVE,
        mime,
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(pane, event)
    return event


def drop_files(qtbot: QtBot, pane: ImagePane, *paths: Path) -> ImageInput:
    """Drop ``paths`` and return the image the pane announces."""
    with qtbot.waitSignal(pane.image_changed, timeout=5000) as blocker:
        event = drop(pane, file_mime(*paths))
    assert event.isAccepted()
    assert event.dropAction() == Qt.DropAction.CopyAction
    (taken,) = blocker.args
    assert isinstance(taken, ImageInput)
    return taken


def refused_drop(qtbot: QtBot, pane: ImagePane, mime: QMimeData) -> str:
    """Drop ``mime``, which must be refused without ``image_changed``; return the message."""
    with (
        qtbot.assertNotEmitted(pane.image_changed),
        qtbot.waitSignal(pane.refused, timeout=5000) as blocker,
    ):
        drop(pane, mime)
    (message,) = blocker.args
    assert message == pane.message()
    return message


def wheel(pane: ImagePane, steps: int, modifiers: Qt.KeyboardModifier) -> None:
    viewport = pane._view.viewport()
    position = QPointF(viewport.rect().center())
    event = QWheelEvent(
        position,
        QPointF(viewport.mapToGlobal(position.toPoint())),
        QPoint(0, 0),
        QPoint(0, 120 * steps),
        Qt.MouseButton.NoButton,
        modifiers,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(viewport, event)


@pytest.fixture
def pane(qtbot: QtBot) -> Iterator[ImagePane]:
    widget = ImagePane()
    qtbot.addWidget(widget)
    widget.resize(640, 480)
    widget.show()
    qtbot.waitExposed(widget)
    yield widget
    QGuiApplication.clipboard().clear()


@pytest.fixture
def first(qtbot: QtBot, pane: ImagePane, tmp_path: Path) -> ImageInput:
    """An image already shown, which refused inputs must leave in place."""
    return drop_files(qtbot, pane, save(noisy((60, 40), seed=1), tmp_path / "first.png"))


# --------------------------------------------------------------------------------------------
# Images taken


def test_png_drop(qtbot: QtBot, pane: ImagePane, tmp_path: Path) -> None:
    path = save(noisy((40, 20)), tmp_path / "a.png")
    taken = drop_files(qtbot, pane, path)
    assert taken.data == path.read_bytes()
    assert (taken.name, taken.path, taken.format) == ("a.png", path, "PNG")
    assert (taken.width, taken.height) == (40, 20)
    assert pane.current() == taken
    assert pane.caption() == "a.png — 40 × 20 — shown at 400%"  # enlarged to fit
    assert pane.message() == ""
    assert "bytes>" in repr(taken) and str(taken.data[:8]) not in repr(taken)


def test_jpeg_drop_gives_the_size_after_exif_orientation(
    qtbot: QtBot, pane: ImagePane, tmp_path: Path
) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = save(noisy((40, 20)), tmp_path / "photo.jpg", exif=exif.tobytes())
    taken = drop_files(qtbot, pane, path)
    assert taken.data == path.read_bytes()
    assert (taken.width, taken.height, taken.format) == (20, 40, "JPEG")
    assert images.load_image(path).original_width == 20  # as the core says
    assert "photo.jpg — 20 × 40" in pane.caption()
    assert pane.shown_size().height() > pane.shown_size().width()


def test_open_file_and_set_image_bytes(qtbot: QtBot, pane: ImagePane, tmp_path: Path) -> None:
    path = save(noisy((30, 30)), tmp_path / "b.gif")
    with qtbot.waitSignal(pane.image_changed) as blocker:
        taken = pane.open_file(path)
    assert taken is not None and blocker.args == [taken]
    assert (taken.format, taken.path) == ("GIF", path)
    data = path.read_bytes()
    from_bytes = pane.set_image_bytes(data, "from memory")
    assert from_bytes is not None
    assert (from_bytes.name, from_bytes.path, from_bytes.data) == ("from memory", None, data)
    assert pane.caption().startswith("from memory — 30 × 30")


def test_clear(qtbot: QtBot, pane: ImagePane, first: ImageInput) -> None:
    del first
    with qtbot.waitSignal(pane.image_changed) as blocker:
        pane.clear()
    assert blocker.args == [None]
    assert pane.current() is None
    assert pane.caption() == ""
    assert pane.shown_size().isEmpty()
    with qtbot.assertNotEmitted(pane.image_changed):
        pane.clear()


# --------------------------------------------------------------------------------------------
# Drops refused, the image shown kept


def test_text_file_is_refused_and_the_image_kept(
    qtbot: QtBot, pane: ImagePane, first: ImageInput, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture\n")
    message = refused_drop(qtbot, pane, file_mime(notes))
    assert message.startswith(
        "notes.txt: not an image Stagewise can read (readable formats: PNG, JPEG, ")
    assert pane.current() == first
    assert pane.caption().startswith("first.png")
    pane.dismiss_message()
    assert pane.message() == ""
    assert pane.current() == first


def test_folder_is_refused(
    qtbot: QtBot, pane: ImagePane, first: ImageInput, tmp_path: Path
) -> None:
    folder = tmp_path / "holiday"
    folder.mkdir()
    assert refused_drop(qtbot, pane, file_mime(folder)) == "holiday is a folder: drop an image file"
    assert pane.current() == first


def test_several_images_are_one_question_shown_as_a_strip(
    qtbot: QtBot, pane: ImagePane, tmp_path: Path
) -> None:
    paths = [save(noisy((10 + i, 10), seed=i), tmp_path / f"p{i}.png") for i in range(3)]
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    taken = drop_files(qtbot, pane, paths[0], notes, paths[1], paths[2])
    assert taken.path == paths[0]
    assert [image.path for image in pane.images()] == paths
    assert pane.message().startswith(
        "3 images dropped: one question about all of them, in this order: p0.png, p1.png, "
        "p2.png (1 skipped: notes.txt")
    strip = pane.strip()
    assert strip.count() == 3 and strip.isVisibleTo(pane)
    qtbot.mouseClick(strip._buttons[2], Qt.MouseButton.LeftButton)
    assert pane.caption().startswith("image 3 of 3 — p2.png — 12 × 10")
    assert pane.current() == taken  # the question's first image stays the first
    drop_files(qtbot, pane, paths[1])  # one image again: no strip
    assert pane.images() == [pane.current()] and strip.isHidden()
    pane.clear()
    assert pane.images() == [] and strip.count() == 0


def test_more_images_than_a_question_takes_are_left_out_with_a_note(
    qtbot: QtBot, pane: ImagePane, tmp_path: Path
) -> None:
    from stagewise.models.inference.images import MAX_IMAGES

    paths = [save(noisy((8, 8), seed=i), tmp_path / f"m{i}.png") for i in range(MAX_IMAGES + 2)]
    drop_files(qtbot, pane, *paths)
    assert len(pane.images()) == MAX_IMAGES
    assert f"at most {MAX_IMAGES} images" in pane.message()


def test_several_files_skip_what_is_not_an_image(
    qtbot: QtBot, pane: ImagePane, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    photo = save(noisy((20, 10)), tmp_path / "photo.jpg")
    taken = drop_files(qtbot, pane, notes, photo)
    assert taken.path == photo
    assert pane.message() == "2 files dropped: showing the first image, photo.jpg"


def test_several_files_none_an_image(
    qtbot: QtBot, pane: ImagePane, first: ImageInput, tmp_path: Path
) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("a")
    b.write_text("b")
    message = refused_drop(qtbot, pane, file_mime(a, b))
    assert message.startswith("2 files dropped: none is an image Stagewise can read.")
    assert "a.txt: not an image" in message
    assert pane.current() == first


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".gif", ".bmp", ".webp"])
def test_truncated_image_is_refused(
    qtbot: QtBot, pane: ImagePane, first: ImageInput, tmp_path: Path, suffix: str
) -> None:
    whole = save(noisy((200, 150)), tmp_path / f"whole{suffix}")
    cut = truncated(whole, tmp_path / f"cut{suffix}")
    if suffix != ".webp":  # Pillow reads a WebP file whole to open it
        with Image.open(cut) as header:  # the header still reads: the pixel data fails
            assert header.size == (200, 150)
    message = refused_drop(qtbot, pane, file_mime(cut))
    assert message.startswith(f"cut{suffix}: the image data is corrupt or truncated")
    assert pane.current() == first


def test_huge_header_is_refused_without_decoding(
    qtbot: QtBot,
    pane: ImagePane,
    first: ImageInput,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_decoding(*_: object, **__: object) -> None:
        raise AssertionError("pixel data decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    monkeypatch.setattr(image_input, "QImageReader", no_decoding)
    huge = write_header_only_png(tmp_path / "huge.png", 20000, 20000)
    message = refused_drop(qtbot, pane, file_mime(huge))
    assert message.startswith("huge.png: the image is too large")
    just_over = write_header_only_png(tmp_path / "big.png", 8001, 8000)
    message = refused_drop(qtbot, pane, file_mime(just_over))
    assert message == (
        "big.png: the image is too large: 8001×8000 = 64,008,000 pixels; "
        "the limit is 64,000,000 pixels"
    )
    assert pane.current() == first


def test_file_over_the_byte_limit_is_refused(
    qtbot: QtBot, pane: ImagePane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 1000)
    path = save(noisy((100, 100)), tmp_path / "n.png")
    message = refused_drop(qtbot, pane, file_mime(path))
    assert message.startswith("n.png: the file is") and "refused" in message
    assert pane.set_image_bytes(path.read_bytes(), "n") is None
    assert "refused" in pane.message()


def test_missing_and_empty_files(pane: ImagePane, tmp_path: Path) -> None:
    assert pane.open_file(tmp_path / "gone.png") is None
    assert pane.message() == "gone.png: no such file"
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert pane.open_file(empty) is None
    assert pane.message() == "empty.png: the file is empty"
    assert pane.open_file(tmp_path) is None
    assert "is a folder: choose an image file" in pane.message()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_unreadable_file(pane: ImagePane, tmp_path: Path) -> None:
    path = save(noisy((10, 10)), tmp_path / "locked.png")
    path.chmod(0)
    try:
        assert pane.open_file(path) is None
    finally:
        path.chmod(0o644)
    assert pane.message() == "locked.png: permission denied: the file cannot be read"


def test_next_good_input_clears_the_message(qtbot: QtBot, pane: ImagePane, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    refused_drop(qtbot, pane, file_mime(notes))
    drop_files(qtbot, pane, save(noisy((5, 5)), tmp_path / "ok.png"))
    assert pane.message() == ""


# --------------------------------------------------------------------------------------------
# Drag feedback


def test_drag_over_highlights_only_images(pane: ImagePane, tmp_path: Path) -> None:
    photo = save(noisy((5, 5)), tmp_path / "photo.png")
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    assert drag_enter(pane, file_mime(photo)).isAccepted()
    assert pane.is_drag_highlighted() and pane._placeholder.is_highlighted()
    QApplication.sendEvent(pane, QDragLeaveEvent())
    assert not pane.is_drag_highlighted()
    assert drag_enter(pane, file_mime(notes)).isAccepted()  # taken, to explain the refusal
    assert not pane.is_drag_highlighted()
    web = QMimeData()
    web.setUrls([QUrl("https://example.org/cat.png")])
    assert not drag_enter(pane, web).isAccepted()
    assert not pane.is_drag_highlighted()


# --------------------------------------------------------------------------------------------
# Image data: drops and the clipboard


def test_raw_image_data_drop(qtbot: QtBot, pane: ImagePane) -> None:
    image = QImage(32, 16, QImage.Format.Format_RGB32)
    image.fill(QColor(200, 30, 30))
    mime = QMimeData()
    mime.setImageData(image)
    with qtbot.waitSignal(pane.image_changed) as blocker:
        drop(pane, mime)
    (taken,) = blocker.args
    assert (taken.name, taken.path, taken.format) == (DROPPED_NAME, None, "PNG")
    assert (taken.width, taken.height) == (32, 16)
    with Image.open(io.BytesIO(taken.data)) as decoded:
        assert decoded.convert("RGB").getpixel((5, 5)) == (200, 30, 30)


def test_encoded_png_mime_data_is_kept_as_is(qtbot: QtBot, pane: ImagePane) -> None:
    encoded = io.BytesIO()
    noisy((12, 8)).save(encoded, "PNG")
    mime = QMimeData()
    mime.setData("image/png", encoded.getvalue())
    with qtbot.waitSignal(pane.image_changed) as blocker:
        drop(pane, mime)
    assert blocker.args[0].data == encoded.getvalue()


def test_paste_image(qtbot: QtBot, pane: ImagePane) -> None:
    image = QImage(24, 48, QImage.Format.Format_ARGB32)
    image.fill(QColor(0, 0, 255, 128))
    QGuiApplication.clipboard().setImage(image)
    with qtbot.waitSignal(pane.image_changed) as blocker:
        taken = pane.paste_from_clipboard()
    assert taken is not None and blocker.args == [taken]
    assert (taken.name, taken.path, taken.format) == (CLIPBOARD_NAME, None, "PNG")
    assert (taken.width, taken.height) == (24, 48)
    assert pane.caption().startswith("<clipboard> — 24 × 48")


def test_paste_file_url(qtbot: QtBot, pane: ImagePane, tmp_path: Path) -> None:
    path = save(noisy((16, 9)), tmp_path / "copied.jpg")
    QGuiApplication.clipboard().setMimeData(file_mime(path))
    with qtbot.waitSignal(pane.image_changed) as blocker:
        pane.paste_from_clipboard()
    (taken,) = blocker.args
    assert (taken.path, taken.data) == (path, path.read_bytes())


def test_paste_without_an_image(qtbot: QtBot, pane: ImagePane, first: ImageInput) -> None:
    QGuiApplication.clipboard().setText("just words")
    with qtbot.assertNotEmitted(pane.image_changed):
        assert pane.paste_from_clipboard() is None
    assert pane.message() == "The clipboard holds no image or image file"
    assert pane.current() == first


# --------------------------------------------------------------------------------------------
# Display and zoom


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_large_image_is_shown_from_a_scaled_decode(
    qtbot: QtBot, pane: ImagePane, tmp_path: Path, suffix: str
) -> None:
    path = save(noisy((5000, 300)), tmp_path / f"wide{suffix}")
    taken = drop_files(qtbot, pane, path)
    assert (taken.width, taken.height) == (5000, 300)
    decoded = pane._view._image
    assert max(decoded.width(), decoded.height()) <= MAX_DISPLAY_SIDE
    assert decoded.width() >= MAX_DISPLAY_SIDE // 2
    shown = pane.shown_size()
    assert shown.width() <= pane._view.viewport().width()
    assert pane.scale() == pytest.approx(shown.width() / 5000, abs=0.01)
    assert f"wide{suffix} — 5000 × 300 — shown at " in pane.caption()
    assert pane.caption().endswith(f"{pane.scale() * 100:.0f}%")


def test_zoom(qtbot: QtBot, pane: ImagePane, tmp_path: Path) -> None:
    drop_files(qtbot, pane, save(noisy((1600, 1200)), tmp_path / "big.png"))
    fitted = pane.scale()
    assert pane.is_fitted() and fitted < 1
    assert pane.shown_size().width() <= pane._view.viewport().width()
    with qtbot.waitSignal(pane.zoom_changed) as blocker:
        pane.zoom_actual()
    assert blocker.args == [1.0]
    assert (pane.shown_size().width(), pane.shown_size().height()) == (1600, 1200)
    assert pane.caption() == "big.png — 1600 × 1200"
    pane.zoom_in()
    assert pane.scale() == 1.25 and not pane.is_fitted()
    assert pane.shown_size().width() == 2000
    assert pane.caption().endswith("shown at 125%")
    pane.zoom_out()
    pane.zoom_out()
    assert pane.scale() == 0.75
    assert pane.shown_size().width() == 1200
    pane.zoom_fit()
    assert pane.is_fitted() and pane.scale() == pytest.approx(fitted)


def test_ctrl_wheel_zooms_and_the_wheel_alone_does_not(
    qtbot: QtBot, pane: ImagePane, tmp_path: Path
) -> None:
    drop_files(qtbot, pane, save(noisy((1600, 1200)), tmp_path / "big.png"))
    fitted = pane.scale()
    wheel(pane, 1, Qt.KeyboardModifier.NoModifier)
    assert pane.scale() == fitted
    wheel(pane, 1, Qt.KeyboardModifier.ControlModifier)
    assert pane.scale() > fitted
    wheel(pane, -2, Qt.KeyboardModifier.ControlModifier)
    assert pane.scale() < fitted


def test_fitted_image_follows_the_pane_size(qtbot: QtBot, pane: ImagePane, tmp_path: Path) -> None:
    drop_files(qtbot, pane, save(noisy((1600, 1200)), tmp_path / "big.png"))
    before = pane.scale()
    pane.resize(400, 300)
    qtbot.waitUntil(lambda: pane.scale() < before)
    pane.zoom_actual()
    pane.resize(900, 700)
    qtbot.wait(20)
    assert pane.scale() == 1.0


def test_small_image_is_enlarged_by_a_whole_factor_with_sharp_pixels(
        qtbot: QtBot, pane: ImagePane, tmp_path: Path) -> None:
    tiny = noisy((24, 16))
    drop_files(qtbot, pane, save(tiny, tmp_path / "tiny.png"))
    assert pane.scale() == MAX_FIT_ENLARGE and pane.is_fitted()
    assert (pane.shown_size().width(), pane.shown_size().height()) == (96, 64)
    assert pane.caption() == f"tiny.png — 24 × 16 — shown at {MAX_FIT_ENLARGE * 100}%"
    # nearest-neighbour: every shown pixel is one of the image's own colours (smooth
    # scaling would blend neighbours into colours the image does not have)
    view = pane._view
    shown = view.viewport().grab().toImage()
    centre = view.mapFromScene(view.sceneRect().center())
    own = {tiny.getpixel((x, y))[:3] for x in range(24) for y in range(16)}
    painted = {shown.pixelColor(centre.x() + dx, centre.y() + dy).getRgb()[:3]
               for dx in range(-40, 40, 3) for dy in range(-24, 24, 3)}
    assert painted <= own, f"{len(painted - own)} blended colours"
    pane.resize(2000, 1500)  # never more than MAX_FIT_ENLARGE
    qtbot.waitUntil(lambda: pane._view.width() > 1500)
    assert pane.scale() == MAX_FIT_ENLARGE
    pane.resize(640, 480)
    drop_files(qtbot, pane, save(noisy((400, 300)), tmp_path / "fits.png"))
    assert pane.scale() == 1.0  # fits, but not twice over: its actual size


def test_zoom_without_an_image_does_nothing(qtbot: QtBot, pane: ImagePane) -> None:
    with qtbot.assertNotEmitted(pane.zoom_changed):
        pane.zoom_in()
        pane.zoom_out()
        pane.zoom_actual()
        pane.zoom_fit()


# --------------------------------------------------------------------------------------------
# The rest


def test_accessibility_and_minimum_size(pane: ImagePane) -> None:
    assert pane.accessibleName() and pane.accessibleDescription()
    assert pane._message.accessibleName()
    assert pane.minimumWidth() >= 280 and pane.minimumHeight() >= 200
    pane.set_busy(True)
    assert pane.is_busy()


def test_original_files_are_left_as_they_were(
    qtbot: QtBot, pane: ImagePane, tmp_path: Path
) -> None:
    exif = Image.Exif()
    exif[0x0112] = 8
    photo = save(noisy((300, 200)), tmp_path / "keep.jpg", exif=exif.tobytes())
    picture = save(noisy((5000, 300)), tmp_path / "keep.png")
    cut = truncated(picture, tmp_path / "cut.png")
    paths = [photo, picture, cut]
    before = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in paths}
    drop_files(qtbot, pane, photo)
    drop_files(qtbot, pane, cut, picture)
    pane.zoom_in()
    pane.zoom_actual()
    pane.zoom_fit()
    QGuiApplication.clipboard().setMimeData(file_mime(photo))
    pane.paste_from_clipboard()
    pane.open_file(cut)
    pane.clear()
    assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in paths} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.png", "keep.jpg", "keep.png"]


def test_the_picture_as_sent_is_shown_at_its_size_with_its_tokens(pane: ImagePane,
                                                                   tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    noisy((900, 600)).save(path)
    pane.open_file(path)
    pane.zoom_fit()
    fitted = pane.shown_size()
    pane.set_sent((252, 168), 54)
    assert "sent as 252 × 168, 54 tokens" in pane.caption() and not pane.shows_sent()
    pane.show_sent(True)
    assert pane.shows_sent() and "(shown)" in pane.caption()
    assert pane._view._image.size().toTuple() == (252, 168)  # the view's own picture
    assert abs(pane.shown_size().width() - fitted.width()) <= 2  # at the pane's zoom
    pane.show_sent(False)
    assert pane._view._image.size().toTuple() != (252, 168)
    pane.show_sent(True)
    pane.set_image_bytes(path.read_bytes(), "again.png")  # another answer's picture
    assert pane.sent() is None and not pane.shows_sent()
    assert "sent as" not in pane.caption()
