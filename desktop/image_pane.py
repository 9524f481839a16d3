"""The image side of the main window: a drop zone that takes one image and shows it.

An image comes in by a drop (files or raw image data), a paste, :meth:`ImagePane.open_file` or
:meth:`ImagePane.set_image_bytes`. Each input is checked the way :mod:`models.images` checks it,
with its limits and wording: the file size before reading, the pixel count from the header
before decoding, and then the pixel data itself. A refused input leaves the image shown before
it in place and says why in a message over the image. An accepted one is announced with
:attr:`ImagePane.image_changed`, carrying an :class:`ImageInput`: the original bytes, untouched.

Files are only ever read. A drop is always taken as a copy, so the program the file was dragged
from never deletes it.

For display, an image is decoded at most :data:`MAX_DISPLAY_SIDE` pixels on its longer side.
PNG, WebP, TIFF and PPM go through :class:`~PySide6.QtGui.QImageReader` with a scaled size (its
PNG reader scales row by row, without the full-size image in memory); Qt reports broken data in
these formats. Other formats go through Pillow, JPEG with reduced decoding: Qt quietly shows a
truncated JPEG, GIF, BMP or ICO as grey, where :func:`models.images.load_image` refuses it.
"""

from __future__ import annotations

import math
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from PIL import Image
from PySide6.QtCore import (
    QBuffer,
    QByteArray,
    QIODevice,
    QMimeData,
    QPointF,
    QRectF,
    QSize,
    Qt,
    QUrl,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QDragEnterEvent,
    QDragLeaveEvent,
    QDragMoveEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QImageReader,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
    QPixmap,
    QResizeEvent,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QStackedWidget,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.widgets import ElidedLabel
from models.errors import ImageError
from models.images import decode_preview, image_suffixes, inspect_image, read_image_file

__all__ = ["CLIPBOARD_NAME", "DROPPED_NAME", "MAX_DISPLAY_SIDE", "ImageInput", "ImagePane"]

MAX_DISPLAY_SIDE = 4096
"""Images are decoded for display with their longer side at most this many pixels."""

CLIPBOARD_NAME = "<clipboard>"
"""The name of an image pasted as image data rather than as a file."""

DROPPED_NAME = "<dropped image>"
"""The name of an image dropped as image data rather than as a file."""

PLACEHOLDER = "Drop an image here, paste one (Ctrl+V) or open a file (Ctrl+O)"

ZOOM_STEPS = (
    0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.33, 0.5, 0.67, 0.75,
    1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0,
)  # fmt: skip
"""The scales :meth:`ImagePane.zoom_in` and :meth:`ImagePane.zoom_out` step through."""

_QT_FORMATS = frozenset({"PNG", "WEBP", "TIFF", "PPM"})
"""Formats decoded for display by Qt: it reports truncated or corrupt data in these."""

_RAW_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp")
"""Encoded image MIME types taken from a drop or the clipboard as they are."""

_WARNING_ACCENT = QColor(224, 155, 0)
_ANGLE_PER_STEP = 120


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


class _Refused(Exception):
    """An input that is not taken; the message is shown to the person as it is."""


class _Action(NamedTuple):
    """How an input arrived, for the wording of messages."""

    imperative: str
    participle: str


_DROP = _Action("drop", "dropped")
_PASTE = _Action("paste", "pasted")
_OPEN = _Action("choose", "opened")


@dataclass(frozen=True)
class _Loaded:
    """An accepted input and the image decoded to show it."""

    input: ImageInput
    display: QImage


# --------------------------------------------------------------------------------------------
# Signals


# --------------------------------------------------------------------------------------------
# Checking and decoding (no widgets)


def _load_file(path: Path, action: _Action) -> _Loaded:
    """Read and check the image file at ``path``.

    Raises:
        _Refused: The path is a folder, cannot be read, or holds no usable image.
    """
    name = path.name or str(path)
    try:
        is_folder = stat.S_ISDIR(path.stat().st_mode)
    except (OSError, ValueError):
        is_folder = False  # read_image_file says what is wrong
    if is_folder:
        raise _Refused(f"{name} is a folder: {action.imperative} an image file")
    try:
        data = read_image_file(path, name)
    except ImageError as error:
        raise _Refused(str(error)) from None
    return _load_bytes(data, name, path)


def _load_bytes(data: bytes, name: str, path: Path | None) -> _Loaded:
    """Check the header of ``data``, then decode it for display.

    Raises:
        _Refused: The data is empty, too large, not a readable image, or corrupt.
    """
    try:
        header = inspect_image(data, name)
        display = _decode_for_display(data, name, header.format)
    except ImageError as error:
        raise _Refused(str(error)) from None
    width, height = _upright_size((header.width, header.height), display)
    image_input = ImageInput(
        data=data, name=name, path=path, width=width, height=height, format=header.format
    )
    return _Loaded(input=image_input, display=display)


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


def _image_data(mime: QMimeData) -> bytes | None:
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


def _has_image_data(mime: QMimeData) -> bool:
    """Whether ``mime`` carries image data (not a file)."""
    return mime.hasImage() or any(mime.hasFormat(kind) for kind in _RAW_IMAGE_TYPES)


def _looks_like_image(path: Path) -> bool:
    """Whether a dragged path probably is an image (by its name only: nothing is read)."""
    return path.suffix.lower() in image_suffixes()


def _percent(scale: float) -> str:
    """``scale`` as a percentage for the caption."""
    percent = scale * 100
    return f"{percent:.0f}%" if percent >= 1 else f"{percent:.1f}%"


def _blend(base: QColor, accent: QColor, amount: float) -> QColor:
    """``amount`` of ``accent`` over ``base``."""
    return QColor(
        round(base.red() + (accent.red() - base.red()) * amount),
        round(base.green() + (accent.green() - base.green()) * amount),
        round(base.blue() + (accent.blue() - base.blue()) * amount),
    )


# --------------------------------------------------------------------------------------------
# Widgets


class _Placeholder(QWidget):
    """The empty state: a dashed rounded frame with a hint, drawn in palette colours."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._highlighted = False
        self.setAccessibleName("Empty image area")
        self.setAccessibleDescription(PLACEHOLDER)

    def set_highlighted(self, highlighted: bool) -> None:
        """Show that a drag over the pane carries something to take."""
        if highlighted != self._highlighted:
            self._highlighted = highlighted
            self.update()

    def is_highlighted(self) -> bool:
        """Whether the drag highlight is shown."""
        return self._highlighted

    def paintEvent(self, event: QPaintEvent) -> None:
        """Draw the frame and the hint."""
        del event
        palette = self.palette()
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        frame = QRectF(self.rect()).adjusted(2, 2, -2, -2)
        if self._highlighted:
            accent = palette.color(QPalette.ColorRole.Highlight)
            fill = QColor(accent)
            fill.setAlpha(40)
            painter.setBrush(fill)
            painter.setPen(QPen(accent, 2, Qt.PenStyle.SolidLine))
        else:
            painter.setBrush(Qt.BrushStyle.NoBrush)
            pen = QPen(palette.color(QPalette.ColorRole.PlaceholderText), 1.5)
            pen.setStyle(Qt.PenStyle.DashLine)
            painter.setPen(pen)
        painter.drawRoundedRect(frame, 12, 12)
        painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
        flags = Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap
        painter.drawText(frame.adjusted(16, 16, -16, -16), int(flags), PLACEHOLDER)
        painter.end()


class _ImageView(QGraphicsView):
    """Shows one image at a given factor, scrolling when it is larger than the view."""

    zoom_requested = Signal(int, QPointF)
    """Ctrl+wheel: the number of steps (positive zooms in) and the point to zoom about."""

    resized = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._scene = QGraphicsScene(self)
        self._item = QGraphicsPixmapItem()
        self._item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._scene.addItem(self._item)
        self.setScene(self._scene)
        self._image = QImage()
        self._full: QPixmap | None = None
        self._wheel_angle = 0
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setAcceptDrops(False)  # drops go to the pane
        self.viewport().setAcceptDrops(False)
        self.setAccessibleName("Image")

    def set_image(self, image: QImage) -> None:
        """Take a new decoded image; :meth:`show_at` then says at which factor to show it."""
        self._image = image
        self._full = None
        self._item.setPixmap(QPixmap())

    def clear(self) -> None:
        """Forget the image."""
        self._image = QImage()
        self._full = None
        self._item.setPixmap(QPixmap())

    def fit_factor(self) -> float:
        """The factor (shown pixels per decoded pixel) at which the image fills the view."""
        if self._image.isNull():
            return 1.0
        available = self.maximumViewportSize()
        return min(
            available.width() / self._image.width(), available.height() / self._image.height()
        )

    def show_at(self, factor: float, anchor: QPointF | None = None) -> None:
        """Show the image ``factor`` times its decoded size, keeping ``anchor`` in place.

        Below 1 the pixmap is scaled once with Qt's smooth (area-averaging) scaling; above,
        the view's transformation enlarges it, painting only what is visible.
        """
        if self._image.isNull():
            return
        anchor = anchor if anchor is not None else QPointF(self.viewport().rect().center())
        fraction = self._fraction_at(anchor)
        if factor < 1:
            size = QSize(
                max(1, math.floor(self._image.width() * factor)),
                max(1, math.floor(self._image.height() * factor)),
            )
            scaled = self._image.scaled(
                size,
                Qt.AspectRatioMode.IgnoreAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
            self._item.setPixmap(QPixmap.fromImage(scaled))
            self.setTransform(QTransform())
        else:
            if self._full is None:
                self._full = QPixmap.fromImage(self._image)
            self._item.setPixmap(self._full)
            self.setTransform(QTransform.fromScale(factor, factor))
        self._scene.setSceneRect(self._item.boundingRect())
        if fraction is None:
            self.centerOn(self._item)
        else:
            self._keep(fraction, anchor)

    def shown_size(self) -> QSize:
        """The size, in screen pixels, at which the image is shown."""
        return self.transform().mapRect(self._item.boundingRect()).size().toSize()

    def _fraction_at(self, point: QPointF) -> QPointF | None:
        """Where ``point`` lies on the image, as fractions of its width and height."""
        rect = self._item.boundingRect()
        if rect.isEmpty():
            return None
        scene = self.mapToScene(point.toPoint())
        return QPointF(scene.x() / rect.width(), scene.y() / rect.height())

    def _keep(self, fraction: QPointF, anchor: QPointF) -> None:
        """Scroll so that the image point at ``fraction`` is under ``anchor`` again."""
        rect = self._item.boundingRect()
        target = QPointF(fraction.x() * rect.width(), fraction.y() * rect.height())
        where = self.mapFromScene(target)
        horizontal, vertical = self.horizontalScrollBar(), self.verticalScrollBar()
        horizontal.setValue(horizontal.value() + round(where.x() - anchor.x()))
        vertical.setValue(vertical.value() + round(where.y() - anchor.y()))

    def wheelEvent(self, event: QWheelEvent) -> None:
        """Ctrl+wheel zooms; the wheel alone scrolls."""
        if not event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            super().wheelEvent(event)
            return
        self._wheel_angle += event.angleDelta().y()
        steps = int(self._wheel_angle / _ANGLE_PER_STEP)
        if steps:
            self._wheel_angle -= steps * _ANGLE_PER_STEP
            self.zoom_requested.emit(steps, event.position())
        event.accept()

    def resizeEvent(self, event: QResizeEvent) -> None:
        """Let the pane fit the image again."""
        super().resizeEvent(event)
        self.resized.emit()


class _MessageBar(QFrame):
    """A calm notice over the image, in palette colours, with a button to dismiss it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._text = ""
        self._warning = True
        self._icon = QLabel(self)
        self._label = QLabel(self)
        self._label.setWordWrap(True)
        self._label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._label.setAccessibleName("Image message")
        self._close = QToolButton(self)
        self._close.setAutoRaise(True)
        self._close.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_TitleBarCloseButton))
        self._close.setToolTip("Dismiss this message")
        self._close.setAccessibleName("Dismiss message")
        self._close.clicked.connect(self.dismiss)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 4, 6)
        layout.addWidget(self._icon, 0, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self._label, 1)
        layout.addWidget(self._close, 0, Qt.AlignmentFlag.AlignTop)
        self.setAccessibleName("Image message")
        self.hide()

    def text(self) -> str:
        """The message shown, or ``""``."""
        return self._text

    def is_warning(self) -> bool:
        """Whether the message says an input was refused (rather than just informing)."""
        return self._warning

    def show_message(self, text: str, *, warning: bool) -> None:
        """Show ``text``; a warning says an input was refused."""
        self._text = text
        self._warning = warning
        self._label.setText(text)
        self.setAccessibleDescription(text)
        kind = "Warning" if warning else "Note"
        self._label.setAccessibleDescription(f"{kind}: {text}")
        icon = (
            QStyle.StandardPixmap.SP_MessageBoxWarning
            if warning
            else QStyle.StandardPixmap.SP_MessageBoxInformation
        )
        self._icon.setPixmap(self.style().standardIcon(icon).pixmap(16, 16))
        self.show()
        self.update()

    def dismiss(self) -> None:
        """Hide the message."""
        self._text = ""
        self._label.clear()
        self.hide()

    def paintEvent(self, event: QPaintEvent) -> None:
        """A tinted rounded box with an accent bar, blended from the palette."""
        del event
        palette = self.palette()
        base = palette.color(QPalette.ColorRole.Window)
        accent = _WARNING_ACCENT if self._warning else palette.color(QPalette.ColorRole.Highlight)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        box = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        painter.setPen(QPen(_blend(base, accent, 0.5), 1))
        painter.setBrush(_blend(base, accent, 0.14))
        painter.drawRoundedRect(box, 6, 6)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(_blend(base, accent, 0.7))
        painter.drawRoundedRect(QRectF(box.left(), box.top(), 4, box.height()), 2, 2)
        painter.end()


class ImagePane(QWidget):
    """A drop zone that takes one image (drop, paste, open) and shows it, zoomable.

    Signals:
        image_changed: An :class:`ImageInput` when an image is taken, or None after
            :meth:`clear`.
        refused: The message, when an input is refused (the previous image stays).
        zoom_changed: The new scale (shown size / original size).
    """

    image_changed = Signal(object)
    refused = Signal(str)
    zoom_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._current: ImageInput | None = None
        self._display = QImage()
        self._scale = 1.0
        self._fit = True
        self._busy = False
        self._drag_hover = False
        self.setAcceptDrops(True)
        self.setMinimumSize(280, 200)
        self.setAccessibleName("Image")
        self.setAccessibleDescription(PLACEHOLDER)
        self._message = _MessageBar(self)
        self._placeholder = _Placeholder(self)
        self._view = _ImageView(self)
        self._view.zoom_requested.connect(self._zoom_steps)
        self._view.resized.connect(self._refit)
        self._stack = QStackedWidget(self)
        self._stack.addWidget(self._placeholder)
        self._stack.addWidget(self._view)
        self._caption = ElidedLabel(self, mode=Qt.TextElideMode.ElideMiddle, selectable=True,
                                    tooltip=True)
        self._caption.setAccessibleName("Image details")
        self._caption.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(6)
        layout.addWidget(self._message)
        layout.addWidget(self._stack, 1)
        layout.addWidget(self._caption)

    # ---------------------------------------------------------------------------- state

    def current(self) -> ImageInput | None:
        """The image shown, or None."""
        return self._current

    def message(self) -> str:
        """The message shown over the image, or ``""``."""
        return self._message.text()

    def dismiss_message(self) -> None:
        """Hide the message over the image."""
        self._message.dismiss()

    def caption(self) -> str:
        """The line under the image (name, original size, scale), or ``""`` when empty."""
        return self._caption.full_text() if self._current is not None else ""

    def scale(self) -> float:
        """The size the image is shown at, relative to its original size."""
        return self._scale

    def is_fitted(self) -> bool:
        """Whether the image follows the pane's size (the default, and after :meth:`zoom_fit`)."""
        return self._fit

    def shown_size(self) -> QSize:
        """The size, in screen pixels, at which the image is shown (empty when no image)."""
        return self._view.shown_size() if self._current is not None else QSize()

    def set_busy(self, busy: bool) -> None:
        """Note that an answer is running. Changing the image stays possible meanwhile."""
        self._busy = busy

    def is_busy(self) -> bool:
        """What :meth:`set_busy` was last told."""
        return self._busy

    def clear(self) -> None:
        """Back to the empty state; emits ``image_changed(None)`` if an image was shown."""
        had_image = self._current is not None
        self._current = None
        self._display = QImage()
        self._view.clear()
        self._message.dismiss()
        self._caption.hide()
        self._stack.setCurrentWidget(self._placeholder)
        self.setAccessibleDescription(PLACEHOLDER)
        if had_image:
            self.image_changed.emit(None)

    # ---------------------------------------------------------------------------- inputs

    def open_file(self, path: str | Path) -> ImageInput | None:
        """Take the image file at ``path`` (File → Open).

        Returns:
            The image taken, or None if refused (the message says why).
        """
        return self._take_paths([Path(path)], _OPEN)

    def set_image_bytes(self, data: bytes, name: str = "<bytes>") -> ImageInput | None:
        """Take an encoded image given as bytes.

        Returns:
            The image taken, or None if refused (the message says why).
        """
        return self._take_data(bytes(data), name)

    def paste_from_clipboard(self) -> ImageInput | None:
        """Take the image on the clipboard: a file if one is there, else the image data.

        Returns:
            The image taken, or None if refused or there is none (the message says why).
        """
        mime = QGuiApplication.clipboard().mimeData()
        if mime is None:
            return self._refuse("The clipboard is empty: copy an image or an image file first")
        return self._take_mime(mime, _PASTE, CLIPBOARD_NAME)

    def paste_mime(self, mime: QMimeData) -> ImageInput | None:
        """Take an image pasted or dropped somewhere else (the question box passes it on).

        Returns:
            The image taken, or None if refused (the message says why).
        """
        return self._take_mime(mime, _PASTE, CLIPBOARD_NAME)

    # ---------------------------------------------------------------------------- zoom

    def zoom_in(self) -> None:
        """Show the image one step larger."""
        larger = [step for step in ZOOM_STEPS if step > self._scale * 1.001]
        if larger:
            self._set_scale(larger[0], fit=False)

    def zoom_out(self) -> None:
        """Show the image one step smaller."""
        smaller = [step for step in ZOOM_STEPS if step < self._scale / 1.001]
        if smaller:
            self._set_scale(smaller[-1], fit=False)

    def zoom_fit(self) -> None:
        """Fit the image to the pane (never enlarging it), and keep fitting it on resizes."""
        self._fit = True
        self._set_scale(self._fit_scale(), fit=True)

    def zoom_actual(self) -> None:
        """Show the image at its original size (100%)."""
        self._set_scale(1.0, fit=False)

    # ---------------------------------------------------------------------------- drag and drop

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        """Accept files and image data; highlight when they look like an image."""
        self._drag(event)

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        """Keep accepting, as a copy."""
        self._drag(event)

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:
        """Drop the highlight."""
        self._set_drag_hover(False)
        event.accept()

    def dropEvent(self, event: QDropEvent) -> None:
        """Take the dropped image (always as a copy: the source file is left where it is)."""
        self._set_drag_hover(False)
        mime = event.mimeData()
        if mime is None or not self._droppable(mime):
            event.ignore()
            return
        event.setDropAction(Qt.DropAction.CopyAction)
        event.accept()
        self._take_mime(mime, _DROP, DROPPED_NAME)

    def is_drag_highlighted(self) -> bool:
        """Whether a drag that carries an image is hovering over the pane."""
        return self._drag_hover

    def paintEvent(self, event: QPaintEvent) -> None:
        """Outline the image while a drag hovers (the placeholder draws its own)."""
        super().paintEvent(event)
        if not (self._drag_hover and self._stack.currentWidget() is self._view):
            return
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(self.palette().color(QPalette.ColorRole.Highlight), 3))
        frame = QRectF(self._stack.geometry()).adjusted(-3, -3, 3, 3)
        painter.drawRoundedRect(frame, 8, 8)
        painter.end()

    # ---------------------------------------------------------------------------- internals

    def _drag(self, event: QDragEnterEvent | QDragMoveEvent) -> None:
        mime = event.mimeData()
        if mime is None or not self._droppable(mime):
            self._set_drag_hover(False)
            event.ignore()
            return
        event.setDropAction(Qt.DropAction.CopyAction)
        event.accept()
        self._set_drag_hover(self._promising(mime))

    @staticmethod
    def _droppable(mime: QMimeData) -> bool:
        """Whether a drop of ``mime`` is taken (and then explained if refused)."""
        local = any(url.isLocalFile() for url in mime.urls()) if mime.hasUrls() else False
        return local or _has_image_data(mime)

    @staticmethod
    def _promising(mime: QMimeData) -> bool:
        """Whether ``mime`` looks like it holds an image, judged without reading a file."""
        if _has_image_data(mime):
            return True
        paths = [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]
        return any(_looks_like_image(path) for path in paths)

    def _set_drag_hover(self, hover: bool) -> None:
        if hover != self._drag_hover:
            self._drag_hover = hover
            self._placeholder.set_highlighted(hover)
            self.update()

    def _take_mime(self, mime: QMimeData, action: _Action, data_name: str) -> ImageInput | None:
        """Take files from ``mime`` if it names local ones, else its image data."""
        urls: list[QUrl] = list(mime.urls()) if mime.hasUrls() else []
        paths = [Path(url.toLocalFile()) for url in urls if url.isLocalFile()]
        if paths:
            return self._take_paths(paths, action)
        data = _image_data(mime)
        if data is not None:
            return self._take_data(data, data_name)
        if urls:
            where = urls[0].toDisplayString()
            return self._refuse(f"{where} is not a file on this computer: save it first")
        source = "clipboard" if action is _PASTE else "drop"
        return self._refuse(f"The {source} holds no image or image file")

    def _take_paths(self, paths: list[Path], action: _Action) -> ImageInput | None:
        """Take the first readable image among ``paths``; say so if there were several."""
        problems: list[str] = []
        for path in paths:
            try:
                loaded = _load_file(path, action)
            except _Refused as refusal:
                problems.append(str(refusal))
                continue
            self._show(loaded)
            if len(paths) > 1:
                self._message.show_message(
                    f"{len(paths)} files {action.participle}: showing the first image, "
                    f"{loaded.input.name}",
                    warning=False,
                )
            return loaded.input
        if len(paths) == 1:
            return self._refuse(problems[0])
        return self._refuse(
            f"{len(paths)} files {action.participle}: none is an image Stagewise can read. "
            f"{problems[0]}"
        )

    def _take_data(self, data: bytes, name: str) -> ImageInput | None:
        try:
            loaded = _load_bytes(data, name, None)
        except _Refused as refusal:
            return self._refuse(str(refusal))
        self._show(loaded)
        return loaded.input

    def _refuse(self, message: str) -> None:
        """Say why an input was not taken; the image shown stays."""
        self._message.show_message(message, warning=True)
        self.refused.emit(message)

    def _show(self, loaded: _Loaded) -> None:
        """Show an accepted image, fitted, and announce it."""
        self._current = loaded.input
        self._display = loaded.display
        self._message.dismiss()
        self._view.set_image(loaded.display)
        self._stack.setCurrentWidget(self._view)
        self._caption.show()
        self._fit = True
        self._set_scale(self._fit_scale(), fit=True)
        self.image_changed.emit(loaded.input)

    def _fit_scale(self) -> float:
        """The scale at which the whole image fits the view, at most 1."""
        if self._current is None:
            return 1.0
        return min(1.0, self._view.fit_factor() * self._display.width() / self._current.width)

    def _set_scale(self, scale: float, *, fit: bool, anchor: QPointF | None = None) -> None:
        if self._current is None:
            return
        self._fit = fit
        self._scale = scale
        self._view.show_at(scale * self._current.width / self._display.width(), anchor)
        self._update_caption()
        self.zoom_changed.emit(scale)

    def _zoom_steps(self, steps: int, anchor: QPointF) -> None:
        """Ctrl+wheel: ``steps`` zoom steps about the point under the pointer."""
        scale = self._scale
        for _ in range(abs(steps)):
            if steps > 0:
                scale = next((s for s in ZOOM_STEPS if s > scale * 1.001), scale)
            else:
                scale = next((s for s in reversed(ZOOM_STEPS) if s < scale / 1.001), scale)
        if scale != self._scale:
            self._set_scale(scale, fit=False, anchor=anchor)

    def _refit(self) -> None:
        if self._fit and self._current is not None:
            self._set_scale(self._fit_scale(), fit=True)

    def _update_caption(self) -> None:
        image = self._current
        if image is None:
            return
        parts = [image.name, f"{image.width} × {image.height}"]
        if round(self._scale * 100, 1) != 100:
            parts.append(f"shown at {_percent(self._scale)}")
        text = " — ".join(parts)
        self._caption.set_full_text(text)
        self.setAccessibleDescription(text)
