"""The image side of the main window: a drop zone that takes an image (or several for one
question) and shows it.

An image comes in by a drop (files or raw image data), a paste, :meth:`ImagePane.open_file` or
:meth:`ImagePane.set_image_bytes`. Each input is checked and decoded by
:mod:`stagewise.desktop.image_input`. A refused input leaves the image shown before it in place and
says why in a message over the image. An accepted one is announced with
:attr:`ImagePane.image_changed`, carrying an :class:`~stagewise.desktop.image_input.ImageInput`: the
original bytes, untouched.

A drop is always taken as a copy, so the program the file was dragged from never deletes it.
The image is shown fitted to the pane (a small one enlarged by a whole factor, its pixels
kept sharp); zooming steps through :data:`ZOOM_STEPS`.

Several image files dropped or opened at once are all taken, in their order, for one
question (:meth:`ImagePane.images`): the first is shown, a strip of thumbnails under it
(:class:`~stagewise.desktop.image_strip.ImageStrip`) shows them all, and clicking one shows
that one. ``image_changed`` carries the first.
"""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import QMimeData, QPointF, QRectF, QSize, Qt, QUrl, Signal
from PySide6.QtGui import (
    QDragEnterEvent,
    QDragLeaveEvent,
    QDragMoveEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
)
from PySide6.QtWidgets import QStackedWidget, QVBoxLayout, QWidget

from stagewise.desktop.image_input import (
    CLIPBOARD_NAME,
    DROP,
    DROPPED_NAME,
    OPEN,
    PASTE,
    Action,
    ImageInput,
    Loaded,
    Refused,
    has_image_data,
    image_data,
    load_bytes,
    load_file,
    looks_like_image,
)
from stagewise.desktop.image_strip import ImageStrip
from stagewise.desktop.image_view import PLACEHOLDER, ImageView, MessageBar, Placeholder
from stagewise.desktop.widgets import ElidedLabel
from stagewise.models.inference.images import MAX_IMAGES

__all__ = ["MAX_FIT_ENLARGE", "ZOOM_STEPS", "ImagePane"]

ZOOM_STEPS = (
    0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.33, 0.5, 0.67, 0.75,
    1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0,
)  # fmt: skip
"""The scales :meth:`ImagePane.zoom_in` and :meth:`ImagePane.zoom_out` step through."""

MAX_FIT_ENLARGE = 4
"""The most a small image is enlarged to fit the pane (by whole factors)."""


def _percent(scale: float) -> str:
    """``scale`` as a percentage for the caption."""
    percent = scale * 100
    return f"{percent:.0f}%" if percent >= 1 else f"{percent:.1f}%"


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
        self._more: list[Loaded] = []  # the question's further images, in order
        self._first_display = QImage()
        self._picked = 0  # which of the question's images the view shows
        self._display = QImage()
        self._shown = QImage()  # what the view shows: the display, or the picture as sent
        self._sent: tuple[int, int, int] | None = None  # width, height, tokens
        self._show_sent = False
        self._scale = 1.0
        self._fit = True
        self._busy = False
        self._readiness = ""
        self._drag_hover = False
        self.setAcceptDrops(True)
        self.setMinimumSize(280, 200)
        self.setAccessibleName("Image")
        self.setAccessibleDescription(PLACEHOLDER)
        self._message = MessageBar(self)
        self._placeholder = Placeholder(self)
        self._view = ImageView(self)
        self._view.zoom_requested.connect(self._zoom_steps)
        self._view.resized.connect(self._refit)
        self._stack = QStackedWidget(self)
        self._stack.addWidget(self._placeholder)
        self._stack.addWidget(self._view)
        self._caption = ElidedLabel(self, mode=Qt.TextElideMode.ElideMiddle, selectable=True,
                                    tooltip=True)
        self._caption.setAccessibleName("Image details")
        self._caption.hide()
        self._strip = ImageStrip(self)
        self._strip.chosen.connect(self.show_image)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(6)
        layout.addWidget(self._message)
        layout.addWidget(self._stack, 1)
        layout.addWidget(self._strip)
        layout.addWidget(self._caption)

    # ---------------------------------------------------------------------------- state

    def current(self) -> ImageInput | None:
        """The image shown, or None."""
        return self._current

    def images(self) -> list[ImageInput]:
        """Every image the next question is about, in order (empty when none)."""
        if self._current is None:
            return []
        return [self._current, *(loaded.input for loaded in self._more)]

    def strip(self) -> ImageStrip:
        """The thumbnails of several images."""
        return self._strip

    def show_image(self, index: int) -> None:
        """Show the ``index``-th of the question's images (the strip's thumbnails)."""
        if self._current is None or not 0 <= index <= len(self._more):
            return
        self._picked = index
        self._display = self._first_display if index == 0 else self._more[index - 1].display
        self._shown = self._display  # a picked image is shown as given, not as sent
        self._view.set_image(self._display)
        self._strip.set_current(index)
        self._fit = True
        self._set_scale(self._fit_scale(), fit=True)

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

    def set_readiness(self, text: str) -> None:
        """Say how far the image is from being ready for a question ("preparing…",
        "ready to ask"), after its name and size; "" says nothing. A new image starts
        with nothing said."""
        self._readiness = text
        self._update_caption()

    def readiness(self) -> str:
        """What :meth:`set_readiness` last said about the image shown."""
        return self._readiness if self._current is not None else ""

    def set_sent(self, size: tuple[int, int], tokens: int) -> None:
        """Say how the image was handed to the model for the answer shown: its size after
        any downscaling and the tokens it took (a size of 0 × 0: not known). The caption
        says it, and :meth:`show_sent` shows the picture at that size."""
        width, height = size
        self._sent = (width, height, tokens) if width > 0 and height > 0 else None
        self._apply_shown()

    def show_sent(self, on: bool) -> None:
        """Show the picture as the model was sent it (View → Show Image as Sent), where
        that is known, instead of as it is."""
        self._show_sent = on
        self._apply_shown()

    def sent(self) -> tuple[int, int, int] | None:
        """What :meth:`set_sent` said for the image shown: width, height, tokens."""
        return self._sent if self._current is not None else None

    def shows_sent(self) -> bool:
        """Whether the picture is shown as it was sent."""
        return self._current is not None and self._shown is not self._display

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
        self._more = []
        self._strip.set_images([])
        self._display = self._shown = QImage()
        self._sent = None
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
        return self._take_paths([Path(path)], OPEN)

    def open_files(self, paths: list[Path]) -> ImageInput | None:
        """Take several image files for one question (File → Open with several chosen).

        Returns:
            The first image taken, or None if none could be (the message says why).
        """
        return self._take_paths([Path(p) for p in paths], OPEN)

    def set_image_bytes(self, data: bytes, name: str = "<bytes>",
                        more: list[tuple[bytes, str]] | None = None) -> ImageInput | None:
        """Take an encoded image given as bytes, and ``more`` images after it for the same
        question (a past question about several, restored).

        Returns:
            The image taken, or None if refused (the message says why).
        """
        if not more:
            return self._take_data(bytes(data), name)
        try:
            loaded = [load_bytes(bytes(raw), label, None)
                      for raw, label in [(data, name), *more]]
        except Refused as refusal:
            return self._refuse(str(refusal))
        self._show(loaded[0], loaded[1:])
        return loaded[0].input

    def paste_from_clipboard(self) -> ImageInput | None:
        """Take the image on the clipboard: a file if one is there, else the image data.

        Returns:
            The image taken, or None if refused or there is none (the message says why).
        """
        mime = QGuiApplication.clipboard().mimeData()
        if mime is None:
            return self._refuse("The clipboard is empty: copy an image or an image file first")
        return self._take_mime(mime, PASTE, CLIPBOARD_NAME)

    def paste_mime(self, mime: QMimeData) -> ImageInput | None:
        """Take an image pasted or dropped somewhere else (the question box passes it on).

        Returns:
            The image taken, or None if refused (the message says why).
        """
        return self._take_mime(mime, PASTE, CLIPBOARD_NAME)

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
        """Fit the image to the pane (a small one enlarged, see :meth:`_fit_scale`), and keep
        fitting it on resizes."""
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
        self._take_mime(mime, DROP, DROPPED_NAME)

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
        return local or has_image_data(mime)

    @staticmethod
    def _promising(mime: QMimeData) -> bool:
        """Whether ``mime`` looks like it holds an image, judged without reading a file."""
        if has_image_data(mime):
            return True
        paths = [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]
        return any(looks_like_image(path) for path in paths)

    def _set_drag_hover(self, hover: bool) -> None:
        if hover != self._drag_hover:
            self._drag_hover = hover
            self._placeholder.set_highlighted(hover)
            self.update()

    def _take_mime(self, mime: QMimeData, action: Action, data_name: str) -> ImageInput | None:
        """Take files from ``mime`` if it names local ones, else its image data."""
        urls: list[QUrl] = list(mime.urls()) if mime.hasUrls() else []
        paths = [Path(url.toLocalFile()) for url in urls if url.isLocalFile()]
        if paths:
            return self._take_paths(paths, action)
        data = image_data(mime)
        if data is not None:
            return self._take_data(data, data_name)
        if urls:
            where = urls[0].toDisplayString()
            return self._refuse(f"{where} is not a file on this computer: save it first")
        source = "clipboard" if action is PASTE else "drop"
        return self._refuse(f"The {source} holds no image or image file")

    def _take_paths(self, paths: list[Path], action: Action) -> ImageInput | None:
        """Take every readable image among ``paths`` (up to :data:`MAX_IMAGES`), in order,
        for one question; say so if there were several files."""
        problems: list[str] = []
        taken: list[Loaded] = []
        for path in paths:
            if len(taken) == MAX_IMAGES:
                problems.append(f"one question takes at most {MAX_IMAGES} images")
                break
            try:
                taken.append(load_file(path, action))
            except Refused as refusal:
                problems.append(str(refusal))
        if taken:
            self._show(taken[0], taken[1:])
            if len(taken) > 1:
                names = ", ".join(loaded.input.name for loaded in taken)
                skipped = f" ({len(problems)} skipped: {problems[0]})" if problems else ""
                self._message.show_message(
                    f"{len(taken)} images {action.participle}: one question about all of "
                    f"them, in this order: {names}{skipped}", warning=False)
            elif len(paths) > 1:
                self._message.show_message(
                    f"{len(paths)} files {action.participle}: showing the first image, "
                    f"{taken[0].input.name}",
                    warning=False,
                )
            return taken[0].input
        if len(paths) == 1:
            return self._refuse(problems[0])
        return self._refuse(
            f"{len(paths)} files {action.participle}: none is an image Stagewise can read. "
            f"{problems[0]}"
        )

    def _take_data(self, data: bytes, name: str) -> ImageInput | None:
        try:
            loaded = load_bytes(data, name, None)
        except Refused as refusal:
            return self._refuse(str(refusal))
        self._show(loaded)
        return loaded.input

    def _refuse(self, message: str) -> None:
        """Say why an input was not taken; the image shown stays."""
        self._message.show_message(message, warning=True)
        self.refused.emit(message)

    def _show(self, loaded: Loaded, more: list[Loaded] | None = None) -> None:
        """Show an accepted image (and the strip of ``more`` for the same question), fitted,
        and announce it."""
        self._current = loaded.input
        self._more = list(more or ())
        self._first_display = loaded.display
        self._picked = 0
        self._strip.set_images([(each.display, each.input.name)
                                for each in (loaded, *self._more)])
        self._display = self._shown = loaded.display
        self._sent = None  # said again after an answer about it
        self._readiness = ""
        self._message.dismiss()
        self._view.set_image(loaded.display)
        self._stack.setCurrentWidget(self._view)
        self._caption.show()
        self._fit = True
        self._set_scale(self._fit_scale(), fit=True)
        self.image_changed.emit(loaded.input)

    def _fit_scale(self) -> float:
        """The scale at which the whole image fits the view. A large image is shrunk to fit;
        a small one (a 96 × 96 puzzle in a large pane) is enlarged by a whole factor, at most
        :data:`MAX_FIT_ENLARGE` times, so its pixels stay square and sharp; one that fits
        but not twice over is shown at its actual size."""
        if self._current is None:
            return 1.0
        fit = self._view.fit_factor() * self._shown.width() / self._shown_input().width
        if fit <= 1:
            return fit
        return float(min(MAX_FIT_ENLARGE, math.floor(fit)))

    def _shown_input(self) -> ImageInput:
        """The image the view shows (the first, or one picked in the strip)."""
        assert self._current is not None
        return self._current if self._picked == 0 else self._more[self._picked - 1].input

    def _set_scale(self, scale: float, *, fit: bool, anchor: QPointF | None = None) -> None:
        if self._current is None:
            return
        self._fit = fit
        self._scale = scale
        self._view.show_at(scale * self._shown_input().width / self._shown.width(), anchor)
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

    def _apply_shown(self) -> None:
        """Show the display image, or the picture as sent when asked and known: the
        display scaled to the sent size, then shown at the pane's zoom like the original,
        so its lost detail shows."""
        if self._current is None:
            return
        shown = self._display
        if self._show_sent and self._sent is not None:
            width, height, _tokens = self._sent
            if (width, height) != (self._current.width, self._current.height):
                shown = self._display.scaled(QSize(width, height),
                                             Qt.AspectRatioMode.IgnoreAspectRatio,
                                             Qt.TransformationMode.SmoothTransformation)
        if shown is not self._shown:
            self._shown = shown
            self._view.set_image(shown)
            self._set_scale(self._fit_scale() if self._fit else self._scale, fit=self._fit)
        self._update_caption()

    def _refit(self) -> None:
        if self._fit and self._current is not None:
            self._set_scale(self._fit_scale(), fit=True)

    def _update_caption(self) -> None:
        if self._current is None:
            return
        image = self._shown_input()
        parts = [image.name, f"{image.width} × {image.height}"]
        if self._more:
            parts.insert(0, f"image {self._picked + 1} of {len(self._more) + 1}")
        if round(self._scale * 100, 1) != 100:
            parts.append(f"shown at {_percent(self._scale)}")
        if self._sent is not None:
            width, height, tokens = self._sent
            shown = " (shown)" if self.shows_sent() else ""
            parts.append(f"sent as {width} × {height}, {tokens} tokens{shown}")
        if self._readiness:
            parts.append(self._readiness)
        text = " — ".join(parts)
        self._caption.set_full_text(text)
        self.setAccessibleDescription(text)
