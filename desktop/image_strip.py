"""The row of thumbnails under the image when one question is about several images."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QToolButton, QWidget

from stagewise.desktop.widgets import plain_tip

__all__ = ["THUMB_SIDE", "ImageStrip"]

THUMB_SIDE = 56
"""The longer side of a thumbnail, in pixels."""


class ImageStrip(QWidget):
    """Thumbnails of a question's images, in the order they are asked about; clicking one
    shows it. Hidden when there is one image.

    Signals:
        chosen: The index of the thumbnail clicked.
    """

    chosen = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Images asked about")
        self._buttons: list[QToolButton] = []
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(4)
        self._layout.addStretch(1)
        self.hide()

    def set_images(self, pictures: Sequence[tuple[QImage, str]]) -> None:
        """Show a thumbnail of each (picture, name); one or none hides the strip."""
        for button in self._buttons:
            self._layout.removeWidget(button)
            button.deleteLater()
        self._buttons = []
        for index, (picture, name) in enumerate(pictures):
            button = QToolButton(self)
            thumb = picture.scaled(THUMB_SIDE, THUMB_SIDE, Qt.AspectRatioMode.KeepAspectRatio,
                                   Qt.TransformationMode.SmoothTransformation)
            button.setIcon(QIcon(QPixmap.fromImage(thumb)))
            button.setIconSize(QSize(THUMB_SIDE, THUMB_SIDE))
            button.setCheckable(True)
            button.setAutoRaise(True)
            button.setToolTip(plain_tip(f"{index + 1}. {name}"))
            button.setAccessibleName(f"Image {index + 1}: {name}")
            button.clicked.connect(lambda _checked=False, i=index: self.chosen.emit(i))
            self._layout.insertWidget(index, button)
            self._buttons.append(button)
        self.set_current(0)
        self.setVisible(len(pictures) > 1)

    def set_current(self, index: int) -> None:
        """Mark the thumbnail of the image shown."""
        for i, button in enumerate(self._buttons):
            button.setChecked(i == index)

    def count(self) -> int:
        """How many thumbnails it holds."""
        return len(self._buttons)
