"""Where llama.cpp may put weights on the CPU: the engine's one decision about AMX.

llama.cpp's CPU backend can offer *extra* buffer types that keep weights in a layout of
their own for faster kernels: ``CPU_REPACK`` (interleaved blocks for AVX2, AVX-512 and
NEON), ``CPU_KLEIDIAI`` (Arm) and ``AMX`` (Intel Advanced Matrix Extensions, offered only
by builds compiled for a CPU that has them, as pip's native builds are on a Xeon of the
Sapphire Rapids class). At load, every weight goes to the first type that takes it, AMX
first: quantized matrices and even F16 output weights.

llama.cpp's AMX path crashes on some models and machines (a SIGSEGV in
``ggml_backend_amx_mul_mat`` during the first prompt decode; llama.cpp issue #20824, closed
without a fix) and was several times slower where it ran (one decode step of a model with
a 152k vocabulary took 178 ms with it and 32 ms without; Ollama dropped its AMX build for
the same reasons). So the engine never lets weights into an AMX buffer unless the user
opts in, with :data:`AMX_ENV` or the ``cpu_amx`` setting.

llama.cpp offers one switch for all extra types (``llama_model_params.use_extra_bufts``),
so on a build that offers AMX, keeping AMX out also keeps ``CPU_REPACK`` out. Everywhere
else the extra types stay on: ``bench/weight_buffers.py`` measures what they are worth.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache

from stagewise.models.inference.ggml_api import bind, ggml_library

__all__ = ["AMX_BUFFER", "AMX_ENV", "REPACK_BUFFER", "WeightBuffers", "choose_weight_buffers",
           "offered_extra_buffers", "parse_weight_buffers", "repacked_types"]

log = logging.getLogger("stagewise.hardware")

AMX_ENV = "STAGEWISE_CPU_AMX"
"""``1`` lets weights into llama.cpp's AMX buffer type, ``0`` keeps them out; it wins over
the ``cpu_amx`` setting."""

AMX_BUFFER = "AMX"
"""The name ggml gives its AMX buffer type."""

REPACK_BUFFER = "CPU_REPACK"
"""The name ggml gives the buffer type of re-laid (interleaved) weights."""

_REPACKED_X86 = {"Q4_0": 8, "Q4_K": 8, "IQ4_NL": 8, "MXFP4": 8}
_REPACKED_AVX512 = {"Q2_K": 8}
_REPACKED_ARM = {"Q4_0": 4, "Q4_K": 8, "Q5_K": 8, "Q6_K": 8, "IQ4_NL": 4, "MXFP4": 4,
                 "Q8_0": 4}

_CPU_DEVICE = 0  # enum ggml_backend_dev_type: GGML_BACKEND_DEVICE_TYPE_CPU
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_BUFFER_LINE = re.compile(r"(\S+) model buffer size = +([0-9.]+) MiB")


@dataclass(frozen=True)
class WeightBuffers:
    """The engine's choice of CPU weight buffers, and why.

    Attributes:
        offered: The extra buffer types the CPU backend offers, in llama.cpp's order.
        use_extra: The value for ``llama_model_params.use_extra_bufts``.
        reason: One sentence for people (``stagewise doctor``, the log).
    """

    offered: tuple[str, ...]
    use_extra: bool
    reason: str

    @property
    def allowed(self) -> tuple[str, ...]:
        """The extra types weights may land in."""
        return self.offered if self.use_extra else ()


@cache
def offered_extra_buffers() -> tuple[str, ...]:
    """The names of the extra buffer types llama.cpp's CPU backend offers on this machine.

    Asked of ggml the way llama.cpp asks at load (``ggml_backend_dev_get_extra_bufts``),
    so AMX is listed only where the build has it and the kernel grants the tile state.
    Empty when the build has none, or no such entry point.
    """
    reg_lib = ggml_library(["ggml"])
    base_lib = ggml_library(["ggml-base", "ggml"])
    if reg_lib is None or base_lib is None:
        return ()
    vp = ctypes.c_void_p
    try:
        by_type = bind(reg_lib, "ggml_backend_dev_by_type", vp, [ctypes.c_int])
        reg_of = bind(base_lib, "ggml_backend_dev_backend_reg", vp, [vp])
        proc = bind(base_lib, "ggml_backend_reg_get_proc_address", vp, [vp, ctypes.c_char_p])
        name_of = bind(base_lib, "ggml_backend_buft_name", ctypes.c_char_p, [vp])
    except AttributeError:
        log.warning("this llama.cpp build has no ggml device API; extra buffers unknown")
        return ()
    cpu = by_type(_CPU_DEVICE)
    if not cpu:
        return ()
    address = proc(reg_of(cpu), b"ggml_backend_dev_get_extra_bufts")
    if not address:
        return ()
    get_extra = ctypes.CFUNCTYPE(ctypes.POINTER(vp), vp)(address)
    array = get_extra(cpu)
    names: list[str] = []
    i = 0
    while array and array[i]:
        names.append((name_of(array[i]) or b"?").decode("utf-8", "replace"))
        i += 1
    return tuple(names)


@cache
def repacked_types() -> tuple[tuple[str, int], ...]:
    """The weight types llama.cpp's CPU backend re-lays in its ``CPU_REPACK`` buffer on this
    CPU, each with the row count its matrices must be a multiple of.

    As ``ggml_repack_get_optimal_repack_type`` (ggml-cpu/repack.cpp) decides: with AVX2,
    Q4_0, Q4_K, IQ4_NL and MXFP4 (and Q2_K with AVX-512); with NEON and dot products, the
    4- to 8-bit K and legacy types. A re-laid matrix is a second copy of its bytes: at load
    the process holds it beside the mapped file. Empty where the build offers no
    ``CPU_REPACK``.
    """
    if REPACK_BUFFER not in offered_extra_buffers():
        return ()
    lib = ggml_library(["ggml-cpu", "ggml"])
    if lib is None:
        return ()

    def has(feature: str) -> bool:
        try:
            return bool(bind(lib, f"ggml_cpu_has_{feature}", ctypes.c_int, [])())
        except AttributeError:
            return False

    types: dict[str, int] = {}
    if has("avx2"):
        types |= _REPACKED_X86
    if has("avx512"):
        types |= _REPACKED_AVX512
    if has("neon") and (has("dotprod") or has("matmul_int8")):
        types |= _REPACKED_ARM
    return tuple(sorted(types.items()))


def _amx_from_env(environ: Mapping[str, str]) -> bool | None:
    value = environ.get(AMX_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    if value:
        log.warning("%s=%r is neither 1 nor 0; ignored", AMX_ENV, value)
    return None


def choose_weight_buffers(allow_amx: bool = False, *, offered: Sequence[str] | None = None,
                          environ: Mapping[str, str] | None = None) -> WeightBuffers:
    """Decide ``use_extra_bufts`` for a load.

    Args:
        allow_amx: The ``cpu_amx`` setting: the user opts in to AMX.
        offered: The extra types on offer; default :func:`offered_extra_buffers`.
        environ: Where :data:`AMX_ENV` is read; default ``os.environ``.
    """
    names = tuple(offered_extra_buffers() if offered is None else offered)
    from_env = _amx_from_env(os.environ if environ is None else environ)
    amx = allow_amx if from_env is None else from_env
    who = f"{AMX_ENV}={int(amx)}" if from_env is not None else "the cpu_amx setting"
    if not names:
        return WeightBuffers(names, True, "this llama.cpp build offers no extra CPU "
                                          "buffer types: weights stay in plain CPU memory")
    if AMX_BUFFER not in names:
        return WeightBuffers(names, True, f"extra CPU buffer types on ({', '.join(names)}); "
                                          "this build offers no AMX")
    if amx:
        return WeightBuffers(names, True, f"AMX on, as {who} asks: weights may go to "
                                          f"{', '.join(names)}")
    others = [n for n in names if n != AMX_BUFFER]
    also = f" ({', '.join(others)} off with it: llama.cpp switches them together)" \
        if others else ""
    return WeightBuffers(names, False, "AMX offered but not used: llama.cpp's AMX path "
                                       "crashes on some machines and was slower where "
                                       f"measured{also}; {AMX_ENV}=1 turns it on")


def parse_weight_buffers(log_lines: Sequence[str]) -> dict[str, float]:
    """MiB of weights per buffer type, from llama.cpp's ``model buffer size`` load lines."""
    sizes: dict[str, float] = {}
    for line in log_lines:
        match = _BUFFER_LINE.search(line)
        if match:
            sizes[match[1]] = sizes.get(match[1], 0.0) + float(match[2])
    return sizes
