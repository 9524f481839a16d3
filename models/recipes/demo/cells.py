"""What is in each grid cell: the vision tower's own training target.

A puzzle's scene says, for each of the nine cells, whether it is empty or holds an object
of one colour, shape and size: 1 + 4 × 3 × 2 = 25 classes. A linear head on the projector's
output (its embeddings averaged over each cell's patches) reads the class back. The vision
tower and projector are first trained alone on this target (a warm-up, so that the picture
is learnt before any text depends on it), and the same loss then stays on beside the
language-model loss at a small weight. The head is used only in training; it is not exported.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stagewise.models.build.puzzles import COLOURS, SHAPES, SIZES, Scene

EMPTY = 0
_COLOURS, _SIZES = tuple(COLOURS), tuple(SIZES)
N_CLASSES = 1 + len(_COLOURS) * len(SHAPES) * len(_SIZES)


def cell_classes(scene: Scene) -> np.ndarray:
    """The nine cells' classes, row-major: 0 for empty, else 1 + (colour, shape, size) index."""
    out = np.full(9, EMPTY, dtype=np.int64)
    for obj in scene.objects:
        index = (_COLOURS.index(obj.colour) * len(SHAPES) + SHAPES.index(obj.shape)) \
            * len(_SIZES) + _SIZES.index(obj.size)
        out[obj.cell] = 1 + index
    return out


def per_cell(embeddings: torch.Tensor) -> torch.Tensor:
    """``(batch, patches, width)`` → ``(batch, 9, width)``: the mean over each cell's patches.

    The patches form a square grid whose side is a multiple of 3 (one or more patches a cell).
    """
    batch, n, width = embeddings.shape
    side = math.isqrt(n)
    if side * side != n or side % 3:
        raise ValueError(f"{n} patches do not tile a 3×3 grid")
    k = side // 3
    grid = embeddings.reshape(batch, 3, k, 3, k, width)
    return grid.mean(dim=(2, 4)).reshape(batch, 9, width)


class CellHead(nn.Module):
    """A linear read-out of each cell's class from the projector's embeddings."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, N_CLASSES)

    def loss(self, embeddings: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the batch's cells."""
        logits = self.linear(per_cell(embeddings))
        return F.cross_entropy(logits.flatten(0, 1), classes.flatten())

    @torch.no_grad()
    def accuracy(self, embeddings: torch.Tensor, classes: torch.Tensor) -> float:
        """Share of cells whose class the head reads right."""
        predicted = self.linear(per_cell(embeddings)).argmax(-1)
        return float((predicted == classes).float().mean())
