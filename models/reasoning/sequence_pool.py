"""The context's sequences, handed out and taken back one question at a time."""

from __future__ import annotations

from stagewise.models.errors import EngineError

__all__ = ["SequencePool"]


class SequencePool:
    """Free sequence ids of one llama.cpp context (ids ``0 .. size - 1``).

    Taking one back does not clear its cache cells: the caller removes them first.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = list(range(size))

    def take(self) -> int:
        """The lowest free id.

        Raises:
            EngineError: Every sequence is in use.
        """
        if not self._free:
            raise EngineError("out of sequences: raise n_seq_max")
        return self._free.pop(0)

    def give_back(self, seq: int) -> None:
        self._free.append(seq)

    def reset(self) -> None:
        """Every id free again (the context was cleared)."""
        self._free = list(range(self.size))

    @property
    def free(self) -> int:
        return len(self._free)
