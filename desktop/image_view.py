"""The parts of the image pane: the empty state, the zoomable view and the message bar.

:class:`~stagewise.desktop.image_pane.ImagePane` puts them together. Colours come from the palette
(the refusal's amber accent blended into it), so light and dark system palettes both work.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QImage,
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
    QStyle,
    QToolButton,
    QWidget,
)

from stagewise.desktop.widgets import linked_html

__all__ = ["PLACEHOLDER", "SHARP_FROM", "ImageView", "MessageBar", "Placeholder"]

PLACEHOLDER = "Drop an image here, paste one (Ctrl+V) or open a file (Ctrl+O)"

SHARP_FROM = 2.0
"""From this enlargement on, an image is painted nearest-neighbour (its pixels sharp)."""

_WARNING_ACCENT = QColor(224, 155, 0)
_ANGLE_PER_STEP = 120


def _blend(base: QColor, accent: QColor, amount: float) -> QColor:
    """``amount`` of ``accent`` over ``base``."""
    return QColor(
        round(base.red() + (accent.red() - base.red()) * amount),
        round(base.green() + (accent.green() - base.green()) * amount),
        round(base.blue() + (accent.blue() - base.blue()) * amount),
    )


class Placeholder(QWidget):
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


class ImageView(QGraphicsView):
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
        the view's transformation enlarges it, painting only what is visible: smoothly up to
        :data:`SHARP_FROM` times, beyond that nearest-neighbour, so that the pixels of a tiny
        image show as the sharp squares they are instead of a blur.
        """
        smooth = factor < SHARP_FROM
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        self._item.setTransformationMode(
            Qt.TransformationMode.SmoothTransformation if smooth
            else Qt.TransformationMode.FastTransformation)
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


class MessageBar(QFrame):
    """A calm notice over the image, in palette colours, with a button to dismiss it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._text = ""
        self._warning = True
        self._icon = QLabel(self)
        self._label = QLabel(self)
        self._label.setTextFormat(Qt.TextFormat.PlainText)  # it names files
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

    def label(self) -> QLabel:
        """The label that shows the message (rich text when it has links)."""
        return self._label

    def is_warning(self) -> bool:
        """Whether the message says an input was refused (rather than just informing)."""
        return self._warning

    def show_message(self, text: str, *, warning: bool, links: bool = False) -> None:
        """Show ``text``; a warning says an input was refused; with ``links`` its web
        addresses are links that open in the browser (the text is still shown as written)."""
        self._text = text
        self._warning = warning
        if links:
            self._label.setTextFormat(Qt.TextFormat.RichText)
            self._label.setText(linked_html(text))
        else:
            self._label.setTextFormat(Qt.TextFormat.PlainText)  # it names files
            self._label.setText(text)
        self._label.setOpenExternalLinks(links)
        self._label.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextBrowserInteraction if links
            else Qt.TextInteractionFlag.TextSelectableByMouse)
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
