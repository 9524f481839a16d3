"""Reading the fields of a server's JSON, each one checked.

A server may send any JSON at all. Every field the remote engines read goes through a
:class:`Fields`, which returns the type asked for, or the default when the field is
missing or null, and raises :class:`~stagewise.models.remote.http.ServerError` (one line
naming the server, the field and what came) when it holds something else.
"""

from __future__ import annotations

import math
from typing import Any

from stagewise.models.remote.http import ServerError

__all__ = ["MAX_COUNT", "Fields"]

MAX_COUNT = 2**40
"""Above any token count, slot count or token id a server can mean."""


class Fields:
    """One JSON object a server sent, read field by field.

    Args:
        value: The object (anything else raises when read).
        where: The request it answered, for messages (``http://host:port/completion``).
        path: Where in the answer the object sits (``choices[0]``), for messages.
    """

    def __init__(self, value: object, where: str, path: str = "") -> None:
        self.where = where
        self.path = path
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self._wrong(path or "the answer", value, "an object")
        self.value: dict[str, Any] = value

    def has(self, key: str) -> bool:
        """Whether the field is there and not null."""
        return self.value.get(key) is not None

    def text(self, key: str, default: str = "") -> str:
        value = self.value.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self._wrong(key, value, "text")
        return value

    def integer(self, key: str, default: int = 0, low: int = 0, high: int = MAX_COUNT) -> int:
        value = self.value.get(key)
        if value is None:
            return default
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self._wrong(key, value, f"a whole number from {low} to {high}")
        return value

    def number(self, key: str) -> float | None:
        """A finite number, or None when missing or null."""
        value = self.value.get(key)
        if value is None:
            return None
        if not isinstance(value, int | float) or isinstance(value, bool) or \
                not math.isfinite(value):
            raise self._wrong(key, value, "a number")
        return float(value)

    def flag(self, key: str) -> bool:
        value = self.value.get(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self._wrong(key, value, "true or false")
        return value

    def object(self, key: str) -> Fields:
        """A nested object (empty when missing or null)."""
        return Fields(self.value.get(key), self.where, self._at(key))

    def objects(self, key: str) -> list[Fields]:
        """A list of objects (empty when missing or null)."""
        return [Fields(item, self.where, f"{self._at(key)}[{i}]")
                for i, item in enumerate(self._list(key))]

    def integers(self, key: str, high: int = MAX_COUNT) -> tuple[int, ...]:
        """A list of whole numbers from 0 to ``high`` (empty when missing or null)."""
        items = self._list(key)
        if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= high
                   for i in items):
            raise self._wrong(key, items, "a list of token ids")
        return tuple(items)

    def texts(self, key: str) -> list[str]:
        items = self._list(key)
        if not all(isinstance(i, str) for i in items):
            raise self._wrong(key, items, "a list of texts")
        return items

    def _list(self, key: str) -> list[Any]:
        value = self.value.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._wrong(key, value, "a list")
        return value

    def _at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _wrong(self, key: str, value: object, kind: str) -> ServerError:
        name = self._at(key) if key != self.path else key
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:59] + "…"
        return ServerError(f"{self.where}: the answer's {name} is not {kind} ({shown})")
