"""The allowed values of a numeric setting, written once beside the dataclass that owns it.

A setting's range (:class:`IntRange`, :class:`FloatRange`) is a module constant next to
its settings dataclass (``BEAM`` in :mod:`~stagewise.models.reasoning.search_settings`,
``N_CTX`` in :mod:`~stagewise.models.inference.engine_settings`, ...). The dataclass's
``validate()`` checks its values with it, and the front ends read the same constant: the
CLI's argument types, the settings dialog's spin boxes, the settings file's loader. Nothing
else writes the numbers.

This module imports nothing but the core's errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stagewise.models.errors import StagewiseError

__all__ = ["FloatRange", "IntRange"]


@dataclass(frozen=True)
class IntRange:
    """Whole numbers from ``low`` to ``high``, and a few values with a meaning of their own.

    Attributes:
        name: The setting's name, as the settings file and the messages spell it.
        low: The smallest ordinary value.
        high: The largest ordinary value.
        special: Values outside ``low..high`` that are allowed, with what they mean
            (``((0, "automatic"),)`` for the context size).
        optional: None is allowed too, meaning what this says ("automatic"); "" when
            None is not allowed.
        note: What a value within the range means, for messages ("1 is a single pass").
    """

    name: str
    low: int
    high: int
    special: tuple[tuple[int, str], ...] = ()
    optional: str = ""
    note: str = ""

    def allows(self, value: object) -> bool:
        """Whether ``value`` is allowed (True and False are not numbers here)."""
        if value is None:
            return bool(self.optional)
        if not isinstance(value, int) or isinstance(value, bool):
            return False
        return self.low <= value <= self.high or value in dict(self.special)

    def describe(self) -> str:
        """The allowed values in words: "a whole number from 1 to 16 (1 is a single pass)"."""
        text = f"a whole number from {self.low} to {self.high}"
        if self.note:
            text += f" ({self.note})"
        extras = [f"{value} ({meaning})" for value, meaning in self.special]
        if self.optional:
            extras.append(f"None ({self.optional})")
        return text + "".join(f" or {extra}" for extra in extras)

    def check(self, value: object) -> None:
        """Raises unless ``value`` is allowed.

        Raises:
            StagewiseError: It is not; the message names the setting, the allowed values
                and the value.
        """
        if not self.allows(value):
            raise StagewiseError(f"{self.name} must be {self.describe()}, not {value!r}")


@dataclass(frozen=True)
class FloatRange:
    """Finite numbers from ``low`` to ``high`` (whole numbers count).

    Attributes:
        name: The setting's name, as the settings file and the messages spell it.
        low: The smallest value.
        high: The largest value.
        optional: None is allowed too, meaning what this says; "" when it is not.
    """

    name: str
    low: float
    high: float
    optional: str = ""

    def allows(self, value: object) -> bool:
        """Whether ``value`` is allowed (True and False are not numbers here)."""
        if value is None:
            return bool(self.optional)
        return (isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(value) and self.low <= value <= self.high)

    def describe(self) -> str:
        """The allowed values in words: "a number from 0 to 2"."""
        text = f"a number from {self.low:g} to {self.high:g}"
        return text + (f" or None ({self.optional})" if self.optional else "")

    def check(self, value: object) -> None:
        """Raises unless ``value`` is allowed.

        Raises:
            StagewiseError: It is not; the message names the setting, the allowed values
                and the value.
        """
        if not self.allows(value):
            raise StagewiseError(f"{self.name} must be {self.describe()}, not {value!r}")
