"""Stored setting values and the types of the settings dataclasses' fields.

:func:`decode` turns a JSON value into a value of a field's type (whole numbers, numbers,
text, true/false, file paths, one of a few words, an enum's value, or None where the type
allows it) or raises :class:`Invalid` with a message that names the setting; the ranges
are the dataclasses' own to check (their ``validate()``). :func:`encode` is the other way.
"""

from __future__ import annotations

import enum
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

__all__ = ["Invalid", "decode", "encode", "supported"]


class Invalid(ValueError):
    """A stored value that cannot be used; the message says why."""


def decode(hint: Any, name: str, value: object) -> object:
    """``value`` as a value of the type ``hint``.

    Args:
        hint: A field's resolved type (``int``, ``float | None``, ``Path | None``,
            ``Literal["a", "b"]``, an enum, ...).
        name: The setting's name, for the message.
        value: The value read from JSON.

    Returns:
        The value in its normal form: whole numbers as floats where a float is wanted,
        an empty path as None, an enum member for its value.

    Raises:
        Invalid: The value is not of the type.
    """
    options = _options(hint)
    if value is None:
        if type(None) in options or Path in options:
            return None
        raise Invalid(f"{name} must be {_words(options)}, not None")
    for option in options:
        if option is type(None):
            continue
        try:
            return _one(option, value)
        except _Wrong:
            continue
    raise Invalid(f"{name} must be {_words(options)}, not {value!r}")


def encode(value: object) -> object:
    """A dataclass field's value as JSON: paths as text, enums by value, dicts and lists
    inside out."""
    if isinstance(value, dict):
        return {key: encode(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def supported(hint: Any) -> bool:
    """Whether :func:`decode` knows every type ``hint`` allows."""
    return all(option in (bool, int, float, str, Path, type(None))
               or typing.get_origin(option) is Literal
               or (isinstance(option, type) and issubclass(option, enum.Enum))
               for option in _options(hint))


class _Wrong(Exception):
    pass


def _options(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _one(option: Any, value: object) -> object:
    if option is bool:
        if isinstance(value, bool):
            return value
    elif option is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif option is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif option is str:
        if isinstance(value, str):
            return value
    elif option is Path:
        if isinstance(value, str | os.PathLike):
            text = os.fspath(value)
            if isinstance(text, str):
                return Path(text) if text else None
    elif typing.get_origin(option) is Literal:
        if isinstance(value, str) and value in typing.get_args(option):
            return value
    elif isinstance(option, type) and issubclass(option, enum.Enum):
        if isinstance(value, option):
            return value
        if any(value == member.value for member in option):
            return option(value)
    raise _Wrong


def _words(options: tuple[Any, ...]) -> str:
    """What the type allows, in words: "a whole number or None"."""
    words = []
    for option in options:
        if option is type(None):
            continue
        if option is bool:
            words.append("true or false")
        elif option is int:
            words.append("a whole number")
        elif option is float:
            words.append("a number")
        elif option is str:
            words.append("text")
        elif option is Path:
            words.append("a file path")
        elif typing.get_origin(option) is Literal:
            words.append("one of " + ", ".join(map(str, typing.get_args(option))))
        else:
            words.append("one of " + ", ".join(str(m.value) for m in option))
    if type(None) in options or Path in options:
        words.append("None")
    return " or ".join(words)
