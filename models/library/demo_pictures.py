"""Whether a picture looks like the demo model's puzzles: a cheap, honest check of its look.

The demo model (:mod:`stagewise.models.library.demo`) was trained only on synthetic puzzles
(``models/build/puzzles/scenes.py``): a white square canvas, 96×96 pixels, with two to six
circles, squares and triangles in four flat colours, and sometimes light-grey clutter. About
any other picture its answers mean nothing, and :func:`outside_demo` says so.

What it looks at, on the picture scaled to the puzzles' 96×96 (nearest pixel, so colours stay
as they are):

* **the shape**: the original must be square within :data:`ASPECT_TOLERANCE`;
* **the colours**: at least :data:`PALETTE_SHARE` of the pixels must be within
  :data:`COLOUR_TOLERANCE` (per channel) of the puzzles' six colours: white, the clutter's
  grey, red, green, blue, yellow;
* **the background**: between :data:`WHITE_SHARE_LOW` and :data:`WHITE_SHARE_HIGH` of the
  pixels must be white, as on every puzzle (an empty canvas is no puzzle either).

Every one of the 1,021 shipped puzzle pictures (the test and validation splits and the example)
passes with room to spare (all their pixels are in the palette; 73% to 98% white). Its limits:
it judges the look, not the content. A drawing of other things in those colours on white (a
flag, a chart, a hand-drawn red square off the grid) passes though the model knows nothing of
it; a real puzzle saved as a heavily compressed JPEG, recoloured, or cropped off-square fails.
It is a reason to doubt an answer, never a guarantee of one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from stagewise.models.inference.images import PreparedImage

__all__ = ["ASPECT_TOLERANCE", "COLOUR_TOLERANCE", "PALETTE", "PALETTE_SHARE",
           "PUZZLE_SIZE", "WHITE_SHARE_HIGH", "WHITE_SHARE_LOW", "PictureCheck",
           "check_picture", "outside_demo"]

PUZZLE_SIZE = 96
"""The puzzles' width and height in pixels (``scenes.CANVAS``)."""

PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 255, 255),  # the background
    (200, 200, 200),  # the clutter's light grey
    (220, 30, 30), (30, 170, 50), (30, 60, 220), (235, 200, 20),  # red, green, blue, yellow
)
"""The puzzles' colours, as ``models/build/puzzles/scenes.py`` draws them (a test keeps the
two the same; runtime code does not import the build tools)."""

ASPECT_TOLERANCE = 0.1
COLOUR_TOLERANCE = 40
PALETTE_SHARE = 0.9
WHITE_SHARE_LOW = 0.5
WHITE_SHARE_HIGH = 0.995


@dataclass(frozen=True)
class PictureCheck:
    """What :func:`check_picture` measured.

    Attributes:
        aspect: Width over height of the original.
        palette_share: The share of pixels in the puzzles' colours.
        white_share: The share of white pixels.
    """

    aspect: float
    palette_share: float
    white_share: float

    def reasons(self) -> list[str]:
        """Why the picture is not like a puzzle, one short phrase each (none: it is)."""
        found = []
        if abs(self.aspect - 1.0) > ASPECT_TOLERANCE:
            found.append("it is not square")
        if self.palette_share < PALETTE_SHARE:
            found.append(f"only {self.palette_share:.0%} of it is in the puzzles' six colours")
        if not WHITE_SHARE_LOW <= self.white_share <= WHITE_SHARE_HIGH:
            found.append(f"{self.white_share:.0%} of it is white background (the puzzles: "
                         f"{WHITE_SHARE_LOW:.0%} to {WHITE_SHARE_HIGH:.1%})")
        return found


def check_picture(image: PreparedImage) -> PictureCheck:
    """Measure how much ``image`` looks like a demo puzzle (see the module docstring)."""
    picture = Image.frombytes("RGB", (image.width, image.height), image.rgb)
    small = picture.resize((PUZZLE_SIZE, PUZZLE_SIZE), Image.Resampling.NEAREST)
    pixels = np.asarray(small, dtype=np.int16).reshape(-1, 3)
    palette = np.asarray(PALETTE, dtype=np.int16)
    distance = np.abs(pixels[:, None, :] - palette[None, :, :]).max(axis=2)
    in_palette = distance.min(axis=1) <= COLOUR_TOLERANCE
    white = distance[:, 0] <= COLOUR_TOLERANCE
    return PictureCheck(
        aspect=image.original_width / max(image.original_height, 1),
        palette_share=float(in_palette.mean()),
        white_share=float(white.mean()),
    )


def outside_demo(image: PreparedImage) -> str | None:
    """One sentence saying that ``image`` is not one of the demo model's puzzles and why;
    None when it looks like one."""
    reasons = check_picture(image).reasons()
    if not reasons:
        return None
    return ("This picture does not look like the demo model's puzzles (coloured circles, "
            "squares and triangles on a white 3×3 grid): " + "; ".join(reasons)
            + ". The demo knows nothing else, so its answer means nothing here.")
