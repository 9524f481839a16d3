"""The catalogue's models at their real shapes, with random weights, built here.

``python -m stagewise.models.recipes.real_shape qwen2.5-vl-3b`` builds one
(:mod:`~stagewise.models.recipes.real_shape.build`); ``bench/real_size.py`` runs them.
Nothing in the test suite needs them: the builder's tests use the scaled-down shapes.
"""

from stagewise.models.recipes.real_shape.build import RealPair, build_pair, pair_folder
from stagewise.models.recipes.real_shape.shapes import SCALED, SHAPES, Shape

__all__ = ["SCALED", "SHAPES", "RealPair", "Shape", "build_pair", "pair_folder"]
