"""Confidence intervals for accuracies, and for the difference of two strategies' accuracies.

Accuracy: the Wilson score interval, which stays inside [0, 1] and is sound for small
samples and accuracies near 0 or 1, where the textbook ±1.96·SE interval is not.

Two strategies on the same questions: their answers are paired, so the difference is
judged by the questions they disagree on. The interval is Newcombe's (1998) square-and-add
interval for paired proportions (his method 10), built from the two Wilson intervals and
the correlation of the pairs; unlike a normal approximation on the per-question
differences it does not shrink to a point when, say, one strategy wins on all of few
questions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Z_95", "PairedDifference", "paired_difference", "wilson_interval"]

Z_95 = 1.959963984540054
"""The standard normal quantile of a two-sided 95% interval."""


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for an accuracy of ``correct`` out of ``n``.

    Returns:
        (low, high), fractions between 0 and 1; (0, 1) when ``n`` is 0.

    Raises:
        ValueError: ``correct`` is not between 0 and ``n``.
    """
    if not 0 <= correct <= n:
        raise ValueError(f"correct must be between 0 and n, not {correct} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    # at p = 0 or 1 the bound is exactly 0 or 1; rounding must not push it past
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class PairedDifference:
    """Accuracy of strategy A minus accuracy of strategy B on the same questions.

    Attributes:
        n: Questions both answered.
        both: Questions both got right.
        a_only: Questions only A got right.
        b_only: Questions only B got right.
        neither: Questions both got wrong.
        low: Lower end of the 95% interval of the difference (a fraction, -1 to 1).
        high: Upper end.
    """

    n: int
    both: int
    a_only: int
    b_only: int
    neither: int
    low: float
    high: float

    @property
    def difference(self) -> float:
        """Accuracy of A minus accuracy of B, a fraction (0 when there are no questions)."""
        return (self.a_only - self.b_only) / self.n if self.n else 0.0

    @property
    def verdict(self) -> str:
        """``"better"`` or ``"worse"`` when the interval excludes 0, else ``"within noise"``."""
        if self.n and self.low > 0:
            return "better"
        if self.n and self.high < 0:
            return "worse"
        return "within noise"


def paired_difference(a: Sequence[bool], b: Sequence[bool],
                      z: float = Z_95) -> PairedDifference:
    """Compare two strategies' per-question correctness (same questions, same order).

    Raises:
        ValueError: The sequences differ in length.
    """
    if len(a) != len(b):
        raise ValueError(f"paired results differ in length: {len(a)} and {len(b)}")
    both = sum(1 for x, y in zip(a, b, strict=True) if x and y)
    a_only = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    b_only = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    n = len(a)
    neither = n - both - a_only - b_only
    if n == 0:
        return PairedDifference(0, 0, 0, 0, 0, -1.0, 1.0)
    low, high = _newcombe(both, a_only, b_only, neither, z)
    return PairedDifference(n, both, a_only, b_only, neither, low, high)


def _newcombe(both: int, a_only: int, b_only: int, neither: int,
              z: float) -> tuple[float, float]:
    """Newcombe's square-and-add interval (method 10) for paired proportions."""
    n = both + a_only + b_only + neither
    ra, rb = both + a_only, both + b_only  # right answers of A and of B
    pa, pb = ra / n, rb / n
    la, ua = wilson_interval(ra, n, z)
    lb, ub = wilson_interval(rb, n, z)
    margins = ra * (n - ra) * rb * (n - rb)
    phi = 0.0
    if margins:
        cross = both * neither - a_only * b_only
        if cross > n / 2:  # continuity-corrected correlation of the pairs
            phi = (cross - n / 2) / math.sqrt(margins)
        elif cross < 0:
            phi = cross / math.sqrt(margins)
    d = pa - pb
    low = d - math.sqrt(max(0.0, (pa - la) ** 2 - 2 * phi * (pa - la) * (ub - pb)
                            + (ub - pb) ** 2))
    high = d + math.sqrt(max(0.0, (pb - lb) ** 2 - 2 * phi * (pb - lb) * (ua - pa)
                             + (ua - pa) ** 2))
    return max(-1.0, low), min(1.0, high)
