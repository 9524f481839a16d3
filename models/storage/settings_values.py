"""Checks for stored setting values: each turns a JSON value into a setting or says why not.

A factory takes the setting's name (and its range or choices) and returns the check, which
raises :class:`Invalid` with a message that names the setting.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["Invalid", "bool_value", "choice_value", "float_value", "int_value", "path_value",
           "text_value"]


class Invalid(ValueError):
    """A stored value that cannot be used; the message says why."""


def path_value(name: str) -> Callable[[object], Path | None]:
    def convert(value: object) -> Path | None:
        if value is None:
            return None
        if isinstance(value, str | os.PathLike):
            text = os.fspath(value)
            if isinstance(text, str):
                return Path(text) if text else None
        raise Invalid(f"{name} must be a file path or null, not {value!r}")

    return convert


def int_value(name: str, low: int, high: int, what: str = "") -> Callable[[object], int]:
    def convert(value: object) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return value
        raise Invalid(
            f"{name} must be a whole number from {low} to {high}{what}, not {value!r}"
        )

    return convert


def float_value(name: str, low: float, high: float) -> Callable[[object], float]:
    def convert(value: object) -> float:
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and low <= value <= high
        ):
            return float(value)
        raise Invalid(f"{name} must be a number from {low:g} to {high:g}, not {value!r}")

    return convert


def choice_value(name: str, choices: tuple[str, ...]) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if isinstance(value, str) and value in choices:
            return value
        raise Invalid(f"{name} must be one of {', '.join(choices)}, not {value!r}")

    return convert


def bool_value(name: str) -> Callable[[object], bool]:
    def convert(value: object) -> bool:
        if isinstance(value, bool):
            return value
        raise Invalid(f"{name} must be true or false, not {value!r}")

    return convert


def text_value(name: str) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if isinstance(value, str):
            return value
        raise Invalid(f"{name} must be text, not {value!r}")

    return convert
