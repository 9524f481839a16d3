"""Errors the core raises for problems a user can fix.

Every error here carries a message meant for people: it names the file or input
and says what is wrong with it. Front ends show ``str(error)`` as is.
"""

from __future__ import annotations

from pathlib import Path


class StagewiseError(Exception):
    """Base class for errors with a user-facing message."""


class ModelFileError(StagewiseError):
    """A model or projector file that llama.cpp must not be given."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ImageError(StagewiseError):
    """An image that cannot be read or is too large to use."""

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class EngineError(StagewiseError):
    """llama.cpp refused an operation (load, tokenize, decode)."""


class Cancelled(StagewiseError):
    """The user stopped the run; whatever was produced so far is kept."""

    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message)
