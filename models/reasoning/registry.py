"""A registry of named parts (strategies, selections): the one list every front end reads.

A part registers itself once, when its module is imported; the CLI's choices, the
Preferences dialog, ``stagewise eval``'s table, the hardware need, the run view and the exports
all read the registry, so adding a part is adding its module (or, for a plug-in or a test,
calling :meth:`Registry.register`), not editing them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

from stagewise.models.errors import StagewiseError

__all__ = ["Named", "Registry"]


class Named(Protocol):
    """What a registered part has: a unique name."""

    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


class Registry(Generic[T]):
    """Parts of one kind, by name, in the order they were registered."""

    def __init__(self, kind: str) -> None:
        """``kind`` names the parts in messages ("strategy", "selection")."""
        self.kind = kind
        self._parts: dict[str, T] = {}

    def register(self, part: T) -> T:
        """Add ``part``; returns it, so a module can register where it defines it.

        Raises:
            ValueError: Another part already has its name.
        """
        if part.name in self._parts and self._parts[part.name] is not part:
            raise ValueError(f"a {self.kind} named {part.name!r} is already registered")
        self._parts[part.name] = part
        return part

    def unregister(self, name: str) -> None:
        """Remove the part named ``name`` (a plug-in unloading, a test cleaning up)."""
        self._parts.pop(name, None)

    def get(self, name: str) -> T:
        """The part named ``name``.

        Raises:
            StagewiseError: There is none; the message lists the names there are.
        """
        part = self._parts.get(name)
        if part is None:
            raise StagewiseError(f"unknown {self.kind} {name!r}: use one of "
                                 f"{', '.join(self._parts)}")
        return part

    def find(self, name: str | None) -> T | None:
        """The part named ``name``, or None (a run saved by a part no longer installed)."""
        return self._parts.get(name or "")

    def names(self) -> tuple[str, ...]:
        """Every name, in registration order."""
        return tuple(self._parts)

    def __iter__(self) -> Iterator[T]:
        return iter(tuple(self._parts.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._parts
