"""Small widgets the window's panes share, in palette colours only.

:class:`GrowingText` (read-only, selectable text that grows with its content),
:class:`ElidedLabel` (one line, shortened to fit), :class:`Chip` (a small rounded label),
:func:`muted_label` for metadata, :func:`plain_label` and :func:`plain_tip` for text
that came from a model, a server, a file or a question (shown as written, never as
markup), :func:`linked_html` (such text with its web addresses made links), and the fonts
they use (:func:`small_font`, :func:`bold_font`). Colours come from the palette only, so
light and dark system palettes both work.

:func:`keep_on_screen` keeps a window, its frame and title bar included, on its screen's
available area (a 1024 × 640 laptop screen gets every dialog whole).
"""

from __future__ import annotations

import html
import math
import re

from PySide6 import QtGui
from PySide6.QtCore import QEvent, QMargins, QObject, QPoint, QRect, QRectF, QSize, Qt
from PySide6.QtGui import (
    QFont,
    QPainter,
    QPaintEvent,
    QPalette,
    QResizeEvent,
    QTextCursor,
    QTextOption,
    QWheelEvent,
)
from PySide6.QtWidgets import QFrame, QLabel, QMessageBox, QSizePolicy, QTextEdit, QWidget


def plain_label(text: str = "", parent: QWidget | None = None) -> QLabel:
    """A label that shows its text as written: Qt would render text that looks like
    markup (a server's HTML error page, say) as rich text, links and images included."""
    label = QLabel(parent)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setText(text)
    return label


def plain_tip(text: str) -> str:
    """``text`` as a tooltip that shows it as written (Qt renders a tooltip that looks
    like markup as rich text)."""
    if not QtGui.Qt.mightBeRichText(text):
        return text
    return QtGui.Qt.convertFromPlainText(text, Qt.WhiteSpaceMode.WhiteSpaceNormal)


_ADDRESS = re.compile(r"https?://[^\s<>\"']+")


def linked_html(text: str) -> str:
    """``text`` as rich text that shows it as written, its web addresses made links (a
    sentence's full stop or closing bracket after an address is not part of it)."""
    parts: list[str] = []
    at = 0
    for match in _ADDRESS.finditer(text):
        address = match.group().rstrip(".,;:)")
        end = match.start() + len(address)
        parts.append(html.escape(text[at:match.start()], quote=False))
        parts.append(f'<a href="{html.escape(address)}">{html.escape(address, quote=False)}</a>')
        at = end
    parts.append(html.escape(text[at:], quote=False))
    return "".join(parts).replace("\n", "<br>")


def plain_message(parent: QWidget | None, icon: QMessageBox.Icon, title: str,
                  text: str) -> None:
    """A modal message box whose text is shown as written (an error's text may hold
    anything a file or a server wrote)."""
    box = QMessageBox(icon, title, "", QMessageBox.StandardButton.Ok, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.setText(text)
    box.exec()


def small_font(widget: QWidget, scale: float = 0.9) -> QFont:
    """The widget's font, scaled (smaller for metadata text by default)."""
    font = QFont(widget.font())
    if font.pointSizeF() > 0:
        font.setPointSizeF(font.pointSizeF() * scale)
    else:
        font.setPixelSize(max(1, round(font.pixelSize() * scale)))
    return font


def bold_font(widget: QWidget, scale: float = 1.0) -> QFont:
    font = small_font(widget, scale) if scale != 1.0 else QFont(widget.font())
    font.setBold(True)
    return font


class GrowingText(QTextEdit):
    """Read-only, selectable, word-wrapped plain text that grows with its content.

    It has no scrollbar of its own: its height follows the text's, and wheel events go to the
    enclosing scroll area. :meth:`set_text` is cheap when nothing changed, and appends when
    the new text continues the old one (a stream), so a selection survives while text grows.
    """

    def __init__(self, parent: QWidget | None = None, *, muted: bool = False,
                 placeholder: str = "") -> None:
        super().__init__(parent)
        self._text = ""
        self._muted = muted
        self._muting = False
        self.setReadOnly(True)
        self.setAcceptRichText(False)
        self.setUndoRedoEnabled(False)
        self.setTabChangesFocus(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                     | Qt.TextInteractionFlag.TextSelectableByKeyboard)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setLineWrapMode(QTextEdit.LineWrapMode.WidgetWidth)
        self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(0)
        self.viewport().setAutoFillBackground(False)
        self.viewport().setCursor(Qt.CursorShape.IBeamCursor)
        self.document().setDocumentMargin(0)
        self.setPlaceholderText(placeholder)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        if muted:
            self.setFont(small_font(self))
            self._apply_muted()
        self._fit()

    def text(self) -> str:
        """The text shown (as given to :meth:`set_text`)."""
        return self._text

    def set_text(self, text: str) -> None:
        """Show ``text``; nothing happens when it did not change."""
        if text == self._text:
            return
        old, self._text = self._text, text
        if old and text.startswith(old):
            cursor = QTextCursor(self.document())
            cursor.movePosition(QTextCursor.MoveOperation.End)
            cursor.insertText(text[len(old):])
        else:
            self.setPlainText(text)

    def wheelEvent(self, event: QWheelEvent) -> None:
        event.ignore()  # never scrolls itself: let the enclosing scroll area have it

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if not hasattr(self, "_muting"):  # during construction
            return
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.FontChange):
            if event.type() == QEvent.Type.PaletteChange:
                self._apply_muted()
            self._fit()

    def _apply_muted(self) -> None:
        """Muted text takes the palette's placeholder colour (again after a theme change)."""
        if not self._muted or self._muting:
            return
        self._muting = True
        try:
            palette = self.palette()
            muted = palette.color(QPalette.ColorRole.PlaceholderText)
            if palette.color(QPalette.ColorRole.Text) != muted:
                palette.setColor(QPalette.ColorRole.Text, muted)
                self.setPalette(palette)
        finally:
            self._muting = False

    def _fit(self) -> None:
        margins = self.contentsMargins()
        height = (math.ceil(self.document().size().height()) + margins.top() + margins.bottom()
                  + 2 * self.frameWidth())
        height = max(height, self.fontMetrics().lineSpacing())
        if self.minimumHeight() != height or self.maximumHeight() != height:
            self.setFixedHeight(height)


class ElidedLabel(QLabel):
    """One line of plain text, shortened with an ellipsis to the width it gets.

    Runs of white space, line breaks included, show as one space. The label asks for the
    width of its whole text and takes less without complaint.

    Args:
        parent: The parent widget.
        mode: Where the text is shortened: at the right (the default), or in the middle,
            which keeps a file name's end in sight.
        selectable: Whether the mouse can select the text.
        tooltip: Whether the whole text is also the tooltip and the accessible description.
    """

    def __init__(self, parent: QWidget | None = None, *,
                 mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight,
                 selectable: bool = False, tooltip: bool = False) -> None:
        super().__init__(parent)
        self._full = ""
        self._mode = mode
        self._tooltip = tooltip
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setWordWrap(False)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        if selectable:
            self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

    def full_text(self) -> str:
        """The text before shortening (its white space runs made single spaces)."""
        return self._full

    def set_full_text(self, text: str) -> None:
        """Show ``text`` on one line, shortened to the label's width."""
        text = " ".join(text.split())
        if text != self._full:
            self._full = text
            if self._tooltip:
                self.setToolTip(plain_tip(text))
                self.setAccessibleDescription(text)
            self._elide()
            self.updateGeometry()

    def sizeHint(self) -> QSize:
        """Wide enough for the whole text."""
        margins = self.contentsMargins()
        full = getattr(self, "_full", "")
        width = self.fontMetrics().horizontalAdvance(full) + margins.left() + margins.right()
        return QSize(width + 2, super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:
        """Room for one letter and the ellipsis."""
        hint = super().minimumSizeHint()
        margins = self.contentsMargins()
        width = self.fontMetrics().horizontalAdvance("M…") + margins.left() + margins.right()
        return QSize(min(width, self.sizeHint().width()), hint.height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        """Shorten again for the new width."""
        super().resizeEvent(event)
        self._elide()

    def changeEvent(self, event: QEvent) -> None:
        """Shorten again for a new font."""
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange and hasattr(self, "_full"):
            self._elide()

    def _elide(self) -> None:
        width = self.contentsRect().width()
        shown = self.fontMetrics().elidedText(self._full, self._mode, max(width, 0))
        if shown != self.text():
            self.setText(shown)


class Chip(ElidedLabel):
    """A small rounded label (a status, or the "Chosen" badge when ``accent``).

    Where its whole text does not fit, it shows its short form (:meth:`set_short_text`,
    "Chosen" for "Chosen · 0.4 s") before it would cut a word.
    """

    def __init__(self, text: str = "", parent: QWidget | None = None, *,
                 accent: bool = False) -> None:
        super().__init__(parent)
        self._short = ""
        self._accent = accent
        self.setFont(small_font(self))
        self.setContentsMargins(8, 1, 8, 1)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        if accent:
            self.setForegroundRole(QPalette.ColorRole.HighlightedText)
        self.set_full_text(text)

    def set_short_text(self, text: str) -> None:
        """The form shown when the whole text does not fit ("" for none)."""
        self._short = " ".join(text.split())
        self._elide()

    def minimumSizeHint(self) -> QSize:
        """Room for the short form, where there is one."""
        hint = super().minimumSizeHint()
        short = getattr(self, "_short", "")
        if not short:
            return hint
        margins = self.contentsMargins()
        width = self.fontMetrics().horizontalAdvance(short) + margins.left() + margins.right()
        return QSize(width + 2, hint.height())

    def _elide(self) -> None:
        short = getattr(self, "_short", "")
        width = self.contentsRect().width()
        if short and self.fontMetrics().horizontalAdvance(self.full_text()) > width:
            shown = self.fontMetrics().elidedText(short, Qt.TextElideMode.ElideRight,
                                                  max(width, 0))
            if shown != self.text():
                self.setText(shown)
            return
        super()._elide()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        rect = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        radius = rect.height() / 2
        if self._accent:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(palette.color(QPalette.ColorRole.Highlight))
        else:
            painter.setPen(palette.color(QPalette.ColorRole.Mid))
            painter.setBrush(palette.color(QPalette.ColorRole.Window))
        painter.drawRoundedRect(rect, radius, radius)
        painter.end()
        super().paintEvent(event)


def muted_label(text: str = "", parent: QWidget | None = None) -> QLabel:
    """A small label in the palette's placeholder colour, for metadata."""
    label = QLabel(text, parent)
    label.setFont(small_font(label))
    label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    return label


ASSUMED_FRAME = QMargins(8, 38, 8, 8)
"""The least a window frame is taken to need around a window (its title bar on top): the
window system reports the real frame only once it has framed the window, and some (Xvfb
without a window manager, the offscreen platform) report none at all."""


def frame_margins(window: QWidget) -> QMargins:
    """The frame around ``window``: what the window system reports, and at least
    :data:`ASSUMED_FRAME` on each side."""
    outer, inner = window.frameGeometry(), window.geometry()
    reported = QMargins(inner.left() - outer.left(), inner.top() - outer.top(),
                        outer.right() - inner.right(), outer.bottom() - inner.bottom())
    return QMargins(max(reported.left(), ASSUMED_FRAME.left()),
                    max(reported.top(), ASSUMED_FRAME.top()),
                    max(reported.right(), ASSUMED_FRAME.right()),
                    max(reported.bottom(), ASSUMED_FRAME.bottom()))


def fitted_size(wanted: QSize, available: QSize, frame: QMargins) -> QSize:
    """``wanted``, made small enough that it and ``frame`` fit in ``available``."""
    return QSize(min(wanted.width(), available.width() - frame.left() - frame.right()),
                 min(wanted.height(), available.height() - frame.top() - frame.bottom()))


def fit_to_screen(window: QWidget, wanted: QSize | None = None) -> None:
    """Resize ``window`` to ``wanted`` (default: its size) or less, and move it, so that it
    lies with its frame within its screen's available area (less the task bar and menus)."""
    screen = window.screen()
    if screen is None:
        return
    area = screen.availableGeometry()
    frame = frame_margins(window)
    size = fitted_size(wanted or window.size(), area.size(), frame)
    if size != window.size():
        window.resize(size)
    outer = QRect(window.geometry().topLeft(), size).marginsAdded(frame)
    dx = max(area.left() - outer.left(), min(0, area.right() - outer.right()))
    dy = max(area.top() - outer.top(), min(0, area.bottom() - outer.bottom()))
    if dx or dy:
        window.move(window.pos() + QPoint(dx, dy))  # pos() is the frame's corner


class _ScreenFit(QObject):
    """Fits its window to the screen (:func:`fit_to_screen`) each time it is shown."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Show and isinstance(watched, QWidget):
            fit_to_screen(watched)
        return False


def keep_on_screen(window: QWidget) -> None:
    """Fit ``window`` to its screen whenever it is shown (:func:`fit_to_screen`)."""
    window.installEventFilter(_ScreenFit(window))
