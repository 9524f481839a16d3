"""One sequence's cache cells as bytes, and back: llama.cpp's sequence state.

``llama_state_seq_get_data`` writes what one sequence holds in the KV cache (its cells'
positions and every layer's keys and values) into a buffer; ``llama_state_seq_set_data``
puts such a buffer into a sequence of a context of the same model, refusing one whose
layer count, tensor types or row sizes differ. Nothing here checks where the bytes came
from: :mod:`stagewise.models.inference.prefix_cache` does, before it hands them over.
"""

from __future__ import annotations

import ctypes

from llama_cpp import llama_cpp as lc

from stagewise.models.errors import EngineError
from stagewise.models.inference.engine import Engine

__all__ = ["read_seq", "seq_positions", "write_seq"]


def read_seq(engine: Engine, seq: int) -> ctypes.Array[ctypes.c_uint8]:
    """The state of sequence ``seq``: its cells' metadata and data, in llama.cpp's format.

    Raises:
        EngineError: llama.cpp wrote less than it said it would.
    """
    size = lc.llama_state_seq_get_size(engine.ctx, seq)
    buffer = (ctypes.c_uint8 * size)()
    written = lc.llama_state_seq_get_data(engine.ctx, buffer, size, seq)
    if written != size:
        raise EngineError(f"llama.cpp wrote {written} bytes of a sequence state of {size}")
    return buffer


def write_seq(engine: Engine, seq: int, data: bytearray) -> bool:
    """Put a state that :func:`read_seq` read (on an engine of the same model and settings)
    into sequence ``seq``, which should be empty; False when llama.cpp refused it (the
    sequence is then left empty, and llama.cpp has logged why)."""
    if not data:
        return False
    buffer = (ctypes.c_uint8 * len(data)).from_buffer(data)
    return lc.llama_state_seq_set_data(engine.ctx, buffer, len(data), seq) > 0


def seq_positions(engine: Engine, seq: int) -> tuple[int, int]:
    """The smallest and largest position sequence ``seq`` holds ((-1, -1) when empty)."""
    memory = lc.llama_get_memory(engine.ctx)
    return (int(lc.llama_memory_seq_pos_min(memory, seq)),
            int(lc.llama_memory_seq_pos_max(memory, seq)))
