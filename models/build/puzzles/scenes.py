"""Simple synthetic scenes: a few coloured shapes on a 3×3 grid, drawn with Pillow.

A scene is a white 96×96 canvas split into nine 32-pixel cells. Each of 2 to 6 objects sits in
its own cell (so a cell name names an object uniquely), centred within ±4 pixels of the cell
centre. Optional clutter (thin light-grey lines and dots) is drawn under the objects.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

__all__ = [
    "CANVAS",
    "CELL",
    "CELL_NAMES",
    "CLUTTER_RGB",
    "COLOURS",
    "SHAPES",
    "SIZES",
    "Clutter",
    "Obj",
    "Scene",
    "column_name",
    "draw",
    "random_scene",
    "row_name",
]

CANVAS = 96
"""Width and height of the image in pixels."""

CELL = CANVAS // 3
"""Width and height of one grid cell in pixels."""

CELL_NAMES: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)
"""The cells' names, row-major; an object's position is the name of its cell."""

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (235, 200, 20),
}
"""Colour names (as used in questions and answers) and their RGB values."""

SIZES: dict[str, int] = {"small": 12, "large": 22}
"""Size names and the objects' extent across, in pixels."""

CLUTTER_RGB = (200, 200, 200)
"""The light grey of the clutter; never one of :data:`COLOURS`."""

BACKGROUND_RGB = (255, 255, 255)
_COLOUR_NAMES = tuple(COLOURS)
_SIZE_NAMES = tuple(SIZES)
JITTER = 4

_COLUMN_NAMES = ("left column", "middle column", "right column")
_ROW_NAMES = ("top row", "middle row", "bottom row")


def column_name(col: int) -> str:
    """``"left column"``, ``"middle column"`` or ``"right column"`` for column 0, 1 or 2."""
    return _COLUMN_NAMES[col]


def row_name(row: int) -> str:
    """``"top row"``, ``"middle row"`` or ``"bottom row"`` for row 0, 1 or 2."""
    return _ROW_NAMES[row]


@dataclass(frozen=True)
class Obj:
    """One shape in a scene.

    Attributes:
        shape: One of :data:`SHAPES`.
        colour: One of the keys of :data:`COLOURS`.
        size: ``"small"`` or ``"large"``.
        cell: The grid cell, 0..8, row-major.
        x: The centre's column in pixels.
        y: The centre's row in pixels.
    """

    shape: str
    colour: str
    size: str
    cell: int
    x: int
    y: int

    @property
    def row(self) -> int:
        """The grid row, 0 (top) to 2 (bottom)."""
        return self.cell // 3

    @property
    def col(self) -> int:
        """The grid column, 0 (left) to 2 (right)."""
        return self.cell % 3

    @property
    def position(self) -> str:
        """The cell's name, e.g. ``"top left"``."""
        return CELL_NAMES[self.cell]

    @property
    def description(self) -> str:
        """Colour and shape, e.g. ``"red circle"``."""
        return f"{self.colour} {self.shape}"

    @property
    def phrase(self) -> str:
        """The caption phrase, e.g. ``"a large red circle at the top left"``."""
        return f"a {self.size} {self.colour} {self.shape} at the {self.position}"


@dataclass(frozen=True)
class Clutter:
    """A distractor: a thin line (``points`` = x0, y0, x1, y1) or a dot (``points`` = x, y)."""

    kind: str
    points: tuple[int, ...]


@dataclass(frozen=True)
class Scene:
    """A whole scene.

    Attributes:
        objects: The objects, in row-major cell order, at most one per cell.
        clutter: The distractors, drawn under the objects; possibly empty.
    """

    objects: tuple[Obj, ...]
    clutter: tuple[Clutter, ...] = ()

    def at(self, cell: int) -> Obj | None:
        """The object in ``cell``, or None."""
        for obj in self.objects:
            if obj.cell == cell:
                return obj
        return None

    @property
    def free_cells(self) -> tuple[int, ...]:
        """The cells without an object."""
        used = {obj.cell for obj in self.objects}
        return tuple(cell for cell in range(9) if cell not in used)


def make_obj(rng: random.Random, cell: int, shape: str, colour: str, size: str) -> Obj:
    """An object in ``cell`` with a jittered centre."""
    x = (cell % 3) * CELL + CELL // 2 + rng.randint(-JITTER, JITTER)
    y = (cell // 3) * CELL + CELL // 2 + rng.randint(-JITTER, JITTER)
    return Obj(shape, colour, size, cell, x, y)


def random_scene(rng: random.Random) -> Scene:
    """A random scene of 2 to 6 objects; the same generator state gives the same scene.

    Args:
        rng: The source of randomness.

    Returns:
        The scene; it has clutter about half of the time.
    """
    count = rng.randint(2, 6)
    cells = sorted(rng.sample(range(9), count))
    objects = tuple(
        make_obj(rng, cell, rng.choice(SHAPES), rng.choice(_COLOUR_NAMES), rng.choice(_SIZE_NAMES))
        for cell in cells
    )
    clutter: list[Clutter] = []
    if rng.random() < 0.5:
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.5:
                x0, y0 = rng.randrange(CANVAS), rng.randrange(CANVAS)
                length = rng.randint(10, 30)
                if rng.random() < 0.5:
                    points = (x0, y0, min(CANVAS - 1, x0 + length), y0)
                else:
                    points = (x0, y0, x0, min(CANVAS - 1, y0 + length))
                clutter.append(Clutter("line", points))
            else:
                dot = (rng.randrange(CANVAS - 1), rng.randrange(CANVAS - 1))
                clutter.append(Clutter("dot", dot))
    return Scene(objects, tuple(clutter))


def draw(scene: Scene) -> Image.Image:
    """Draw ``scene`` as a 96×96 RGB image (clutter first, then the objects, no anti-aliasing).

    Args:
        scene: The scene.

    Returns:
        A new image.
    """
    image = Image.new("RGB", (CANVAS, CANVAS), BACKGROUND_RGB)
    pen = ImageDraw.Draw(image)
    for item in scene.clutter:
        if item.kind == "line":
            pen.line(item.points, fill=CLUTTER_RGB, width=1)
        else:
            x, y = item.points
            pen.rectangle((x, y, x + 1, y + 1), fill=CLUTTER_RGB)
    for obj in scene.objects:
        rgb = COLOURS[obj.colour]
        r = SIZES[obj.size] // 2
        box = (obj.x - r, obj.y - r, obj.x + r - 1, obj.y + r - 1)
        if obj.shape == "circle":
            pen.ellipse(box, fill=rgb)
        elif obj.shape == "square":
            pen.rectangle(box, fill=rgb)
        else:
            pen.polygon([(obj.x, obj.y - r), (obj.x - r, obj.y + r - 1),
                         (obj.x + r - 1, obj.y + r - 1)], fill=rgb)
    return image
