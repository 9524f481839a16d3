"""ctypes access to ggml's backend API in the libraries llama-cpp-python ships.

llama-cpp-python binds llama.h and mtmd.h but not ggml-backend.h; the few ggml calls the
app needs (devices, their memory, the CPU backend's extra buffer types) are bound here,
on the very library files llama.cpp itself loaded, so they see the same registry.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def ggml_library(names: Sequence[str]) -> ctypes.CDLL | None:
    """The first of ``names`` (without ``lib`` or a suffix) shipped inside llama_cpp.

    Falls back to libllama's own handle, which on Linux and macOS also finds ggml's
    symbols; None when neither is there.
    """
    import llama_cpp
    from llama_cpp import llama_cpp as lc

    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    if sys.platform == "win32":
        files = [f"{n}.dll" for n in names] + [f"lib{n}.dll" for n in names]
    elif sys.platform == "darwin":
        files = [f"lib{n}.dylib" for n in names] + [f"lib{n}.so" for n in names]
    else:
        files = [f"lib{n}.so" for n in names]
    for file in files:
        if (lib_dir / file).exists():
            try:
                return ctypes.CDLL(str(lib_dir / file))
            except OSError:
                continue
    return getattr(lc, "_lib", None)


def bind(lib: ctypes.CDLL, name: str, restype: object, argtypes: list[object]) -> Any:
    """The C function ``name`` of ``lib`` with its signature set.

    Raises:
        AttributeError: The library has no such symbol.
    """
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = argtypes
    return fn
