"""What this computer has, what a model pair and a search need, and whether one fits the other.

Three steps, each usable on its own:

* :func:`detect_hardware` lists llama.cpp's backend devices (CPU, GPUs, accelerators) with
  their memory, through ggml's device API, and reads the RAM and CPU count of the machine.
* :func:`estimate_need` reads the headers of a text model and its projector (no weights are
  loaded) and estimates the bytes a run needs: weights, projector, KV cache and compute
  buffers, and the context (tokens) a search of a given beam width fills.
* :func:`plan_fit` decides where that goes: all on the GPU, some layers on the GPU and the
  rest in RAM, in RAM only, or nowhere, and when nowhere it says what would fit (a smaller
  quantization of the same model, a smaller context).

:func:`check_fit` chains the three for the engine's and the search's settings.

Formulas follow the llama.cpp that llama-cpp-python 0.3.36 vendors; each is documented where
it is used. The estimates are meant to be a little high rather than low.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from models.gguf_check import GGUFInfo, LongArray, inspect_gguf

if TYPE_CHECKING:
    from models.engine import EngineSettings
    from models.search_settings import SearchSettings

__all__ = [
    "QUANT_BITS_PER_WEIGHT",
    "Device",
    "DeviceKind",
    "Fit",
    "Hardware",
    "Need",
    "NeedDetail",
    "check_fit",
    "detect_hardware",
    "estimate_image_tokens",
    "estimate_need",
    "kv_bytes_per_token",
    "need_from_detail",
    "plan_fit",
]

log = logging.getLogger("stagewise.hardware")

DeviceKind = Literal["cpu", "gpu", "igpu", "accel"]
Where = Literal["gpu", "gpu+cpu", "cpu", "none"]

MiB = 1024 * 1024
GiB = 1024 * MiB

# enum ggml_backend_dev_type (ggml/include/ggml-backend.h): CPU, GPU, IGPU, ACCEL in this order.
_DEV_KINDS: dict[int, DeviceKind] = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}

# Memory kept free: RAM for the app, the OS and other programs; VRAM for the driver, the
# fragmentation of the allocator and other programs on the GPU. Each is a fixed part plus a
# share of the total.
RAM_RESERVE = 512 * MiB
RAM_RESERVE_SHARE = 0.05
VRAM_RESERVE = 256 * MiB
VRAM_RESERVE_SHARE = 0.05

# Bytes of one KV cache element: llama.cpp's default type_k / type_v is F16, which the engine
# does not change.
KV_ELEMENT_BYTES = 2
# llama-context.cpp (llama_context::llama_context): cparams.n_ctx = GGML_PAD(cparams.n_ctx, 256).
CTX_PAD = 256

# Tokens of the chat template, the instruction and a question, when not given.
DEFAULT_PROMPT_TOKENS = 256
# A judge prompt's fixed text (task sentence, answer form, labels, chat template) and the
# text-only check's fixed text, in tokens (models/judge.py, measured with room to spare).
JUDGE_FIXED_TOKENS = 128
CHECK_FIXED_TOKENS = 96
# Labels and separators around each response in a judge prompt.
JUDGE_PER_PAIR_TOKENS = 16

# The longest side of an image handed to libmtmd (models.images.MAX_SIDE). Kept here as a
# number so that this module does not import Pillow.
IMAGE_MAX_SIDE = 2048

# Llama-3-8B's parameter count and the file sizes (GiB) of its quantizations, from the
# QUANT_OPTIONS table of llama.cpp's tools/quantize/quantize.cpp ("7.96G, +0.0026 ppl @
# Llama-3-8B" and so on). Mixed quantizations keep some tensors (output, token embeddings,
# attention V) at a higher type, so whole-file sizes give the honest bits per weight.
_LLAMA3_8B_PARAMS = 8_030_261_248
_LLAMA3_8B_GIB = {
    "Q8_0": 7.96,
    "Q6_K": 6.14,
    "Q5_K_M": 5.33,
    "Q4_K_M": 4.58,
    "Q3_K_M": 3.74,
    "Q2_K": 2.96,
}
QUANT_BITS_PER_WEIGHT: Mapping[str, float] = {
    name: gib * GiB * 8 / _LLAMA3_8B_PARAMS for name, gib in _LLAMA3_8B_GIB.items()
}
"""Bits per weight of whole files, largest first: Q8_0 8.52, Q6_K 6.57, Q5_K_M 5.70,
Q4_K_M 4.90, Q3_K_M 4.00, Q2_K 3.17."""


# --------------------------------------------------------------------------- hardware


@dataclass(frozen=True)
class Device:
    """One llama.cpp backend device.

    Attributes:
        name: ggml's name, e.g. "CPU", "CUDA0", "Metal", "Vulkan0".
        description: The device's own description, e.g. "NVIDIA GeForce RTX 4070".
        kind: "cpu", "gpu" (own memory), "igpu" (integrated, host memory) or "accel"
            (BLAS, AMX and the like, used together with the CPU).
        free_bytes: Free memory as the backend reports it. The CPU backend reports all
            of the RAM as free; :attr:`Hardware.ram_available` is the better number.
        total_bytes: Total memory of the device.
    """

    name: str
    description: str
    kind: DeviceKind
    free_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class Hardware:
    """What this computer offers llama.cpp.

    Attributes:
        devices: ggml backend devices, in ggml's order.
        gpu_offload: Whether this llama.cpp build can offload layers
            (``llama_supports_gpu_offload``).
        ram_total: Physical memory (or the container's limit, if lower), in bytes.
        ram_available: Memory that can be had without swapping, in bytes.
        cpu_count: CPU cores this process may run on.
        unified_memory: The GPU works in the same memory as the CPU (Apple silicon, an
            integrated GPU): what goes on the GPU also takes RAM.
    """

    devices: tuple[Device, ...]
    gpu_offload: bool
    ram_total: int
    ram_available: int
    cpu_count: int
    unified_memory: bool = False

    @property
    def gpus(self) -> tuple[Device, ...]:
        """The devices that layers can be offloaded to (dedicated and integrated GPUs)."""
        return tuple(d for d in self.devices if d.kind in ("gpu", "igpu"))

    @property
    def gpu_free(self) -> int:
        """Free memory over all GPUs, in bytes."""
        return sum(d.free_bytes for d in self.gpus)

    @property
    def usable_ram(self) -> int:
        """Available RAM less the reserve (:data:`RAM_RESERVE` + 5 % of the total)."""
        reserve = RAM_RESERVE + int(RAM_RESERVE_SHARE * self.ram_total)
        return max(0, self.ram_available - reserve)

    @property
    def usable_vram(self) -> int:
        """Free GPU memory less each GPU's reserve; 0 where layers cannot be offloaded."""
        if not self.gpu_offload:
            return 0
        return sum(
            max(0, d.free_bytes - VRAM_RESERVE - int(VRAM_RESERVE_SHARE * d.total_bytes))
            for d in self.gpus
        )


def _ggml_library(names: Sequence[str]) -> ctypes.CDLL | None:
    """The ggml library shipped inside llama_cpp (the same file llama.cpp itself uses)."""
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
    # libllama links ggml; on Linux and macOS its handle also finds ggml's symbols
    return getattr(lc, "_lib", None)


def _bind(lib: ctypes.CDLL, name: str, restype: object, argtypes: list[object]) -> Any:
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = argtypes
    return fn


def _backend_devices() -> tuple[Device, ...]:
    """ggml's device list: ggml_backend_dev_count / _get (libggml) and the device getters
    (libggml-base), with the C signatures of ggml/include/ggml-backend.h."""
    reg_lib = _ggml_library(["ggml"])
    dev_lib = _ggml_library(["ggml-base", "ggml"])
    if reg_lib is None or dev_lib is None:
        return ()
    vp, size_t = ctypes.c_void_p, ctypes.c_size_t
    try:
        # size_t ggml_backend_dev_count(void); ggml_backend_dev_t ggml_backend_dev_get(size_t)
        count = _bind(reg_lib, "ggml_backend_dev_count", size_t, [])
        get = _bind(reg_lib, "ggml_backend_dev_get", vp, [size_t])
        # const char * ggml_backend_dev_name / _description(ggml_backend_dev_t)
        name = _bind(dev_lib, "ggml_backend_dev_name", ctypes.c_char_p, [vp])
        description = _bind(dev_lib, "ggml_backend_dev_description", ctypes.c_char_p, [vp])
        # enum ggml_backend_dev_type ggml_backend_dev_type(ggml_backend_dev_t)
        kind = _bind(dev_lib, "ggml_backend_dev_type", ctypes.c_int, [vp])
        # void ggml_backend_dev_memory(ggml_backend_dev_t, size_t * free, size_t * total)
        memory = _bind(dev_lib, "ggml_backend_dev_memory", None,
                       [vp, ctypes.POINTER(size_t), ctypes.POINTER(size_t)])
    except AttributeError:
        log.warning("this llama.cpp build has no ggml device API; devices are not listed")
        return ()
    devices = []
    for i in range(count()):
        dev = get(i)
        if not dev:
            continue
        free, total = size_t(0), size_t(0)
        memory(dev, ctypes.byref(free), ctypes.byref(total))
        devices.append(Device(
            name=(name(dev) or b"").decode("utf-8", "replace"),
            description=(description(dev) or b"").decode("utf-8", "replace"),
            kind=_DEV_KINDS.get(kind(dev), "accel"),
            free_bytes=int(free.value),
            total_bytes=int(total.value),
        ))
    return tuple(devices)


def _linux_ram() -> tuple[int, int] | None:
    """MemTotal and MemAvailable from /proc/meminfo, capped by a cgroup memory limit."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            info = {k.strip(): v for k, _, v in (line.partition(":") for line in f)}
    except OSError:
        return None

    def kib(key: str) -> int | None:
        value = info.get(key, "").split()
        return int(value[0]) * 1024 if value and value[0].isdigit() else None

    total = kib("MemTotal")
    if not total:
        return None
    available = kib("MemAvailable")
    if available is None:  # kernels before 3.14
        available = sum(kib(k) or 0 for k in ("MemFree", "Buffers", "Cached"))
    limit = _cgroup_limit()
    if limit is not None:
        cap, used = limit
        total = min(total, cap)
        available = min(available, max(0, cap - used))
    return total, min(available, total)


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _reclaimable(stat_path: str) -> int:
    """Inactive file cache in a cgroup's memory.stat: counted as used, but can be had."""
    try:
        with open(stat_path, encoding="ascii") as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key in ("inactive_file", "total_inactive_file") and value.strip().isdigit():
                    return int(value)
    except OSError:
        pass
    return 0


def _cgroup_limit() -> tuple[int, int] | None:
    """The memory limit of this process's cgroup and its use (less the inactive file cache),
    if there is a limit (cgroup v2, then v1)."""
    own = ""
    try:
        with open("/proc/self/cgroup", encoding="ascii") as f:
            for line in f:
                if line.startswith("0::"):
                    own = line[3:].strip()
    except OSError:
        pass
    v2 = f"/sys/fs/cgroup{own.rstrip('/')}"
    candidates = [
        (f"{v2}/memory.max", f"{v2}/memory.current", f"{v2}/memory.stat"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
         "/sys/fs/cgroup/memory/memory.usage_in_bytes", "/sys/fs/cgroup/memory/memory.stat"),
    ]
    for limit_path, usage_path, stat_path in candidates:
        limit = _read_int(limit_path)  # "max" (no limit) reads as None
        if limit is not None and limit < 1 << 60:
            used = (_read_int(usage_path) or 0) - _reclaimable(stat_path)
            return limit, max(0, used)
    return None


class _MemoryStatusEx(ctypes.Structure):
    _fields_ = [
        ("dwLength", ctypes.c_uint32),
        ("dwMemoryLoad", ctypes.c_uint32),
        ("ullTotalPhys", ctypes.c_uint64),
        ("ullAvailPhys", ctypes.c_uint64),
        ("ullTotalPageFile", ctypes.c_uint64),
        ("ullAvailPageFile", ctypes.c_uint64),
        ("ullTotalVirtual", ctypes.c_uint64),
        ("ullAvailVirtual", ctypes.c_uint64),
        ("ullAvailExtendedVirtual", ctypes.c_uint64),
    ]


def _windows_ram() -> tuple[int, int] | None:
    """ullTotalPhys and ullAvailPhys from GlobalMemoryStatusEx."""
    status = _MemoryStatusEx()
    status.dwLength = ctypes.sizeof(_MemoryStatusEx)
    try:
        ok = ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return None
    if not ok:
        return None
    return int(status.ullTotalPhys), int(status.ullAvailPhys)


def _macos_ram() -> tuple[int, int] | None:
    """sysctl hw.memsize, and free + inactive pages from host_statistics64 (as psutil)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "/usr/lib/libSystem.B.dylib")
        memsize, size = ctypes.c_uint64(0), ctypes.c_size_t(8)
        if libc.sysctlbyname(b"hw.memsize", ctypes.byref(memsize), ctypes.byref(size),
                             None, ctypes.c_size_t(0)) != 0:
            return None
        total = int(memsize.value)
    except (OSError, AttributeError):
        return None
    available = total
    try:
        libc.mach_host_self.restype = ctypes.c_uint32
        host = libc.mach_host_self()
        words = (ctypes.c_uint32 * 64)()
        count = ctypes.c_uint32(38)  # HOST_VM_INFO64_COUNT; the buffer has room for more
        host_vm_info64 = 4
        if libc.host_statistics64(host, host_vm_info64, words, ctypes.byref(count)) == 0:
            page = os.sysconf("SC_PAGE_SIZE")
            # vm_statistics64 starts: free_count, active_count, inactive_count
            free_pages, inactive_pages = words[0], words[2]
            available = min(total, (free_pages + inactive_pages) * page)
    except (OSError, AttributeError, ValueError):
        pass
    return total, available


def _ram(devices: Sequence[Device]) -> tuple[int, int]:
    found: tuple[int, int] | None = None
    if sys.platform.startswith("linux"):
        found = _linux_ram()
    elif sys.platform == "win32":
        found = _windows_ram()
    elif sys.platform == "darwin":
        found = _macos_ram()
    if found is None:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            try:
                available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
            except (ValueError, OSError):
                available = total // 2  # unknown: assume half is in use
            found = (total, available)
        except (ValueError, OSError, AttributeError):
            cpu = next((d for d in devices if d.kind == "cpu"), None)
            found = (cpu.total_bytes, cpu.free_bytes) if cpu else (0, 0)
    return found


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def detect_hardware() -> Hardware:
    """Lists llama.cpp's devices and this machine's RAM and CPUs.

    Initializes llama.cpp's backend first, as the engine does, so the devices are those the
    engine would use. RAM comes from /proc/meminfo on Linux (capped by a cgroup limit),
    GlobalMemoryStatusEx on Windows and sysctl / host_statistics64 on macOS, with
    ``os.sysconf`` and then ggml's CPU device as fallbacks.

    Returns:
        The hardware, with the devices in ggml's order.
    """
    from models.engine import supports_gpu_offload  # loads llama.cpp; initializes the backend

    gpu_offload = supports_gpu_offload()
    try:
        devices = _backend_devices()
    except OSError as e:
        log.warning("could not list llama.cpp's devices: %s", e)
        devices = ()
    ram_total, ram_available = _ram(devices)
    gpus = [d for d in devices if d.kind in ("gpu", "igpu")]
    unified = bool(gpus) and (sys.platform == "darwin" or all(d.kind == "igpu" for d in gpus))
    return Hardware(
        devices=devices,
        gpu_offload=gpu_offload,
        ram_total=ram_total,
        ram_available=ram_available,
        cpu_count=_cpu_count(),
        unified_memory=unified,
    )


# --------------------------------------------------------------------------- need


@dataclass(frozen=True)
class NeedDetail:
    """The model numbers behind a :class:`Need`, to re-estimate it for another context.

    Attributes:
        params: Parameters of the text model (elements of all its tensors).
        n_layer: Transformer blocks of the text model.
        n_vocab: Vocabulary size.
        n_ctx_train: The context the model was trained for (0 if unknown).
        kv_per_token: KV cache bytes per context cell, over all layers.
        attn_per_token: Compute buffer bytes per context cell (attention scores or mask).
        logits: Compute buffer bytes of one micro-batch's logits.
        activations: Compute buffer bytes of one micro-batch's other activations.
        vision_compute: Bytes for encoding one image (or one tile), with its embeddings.
        image_tokens: Tokens one image takes in the context (estimated or given).
    """

    params: int
    n_layer: int
    n_vocab: int
    n_ctx_train: int
    kv_per_token: int
    attn_per_token: int
    logits: int
    activations: int
    vision_compute: int
    image_tokens: int


@dataclass(frozen=True)
class Need:
    """Memory (bytes) and context (tokens) a model pair and a search need.

    Attributes:
        weights: Tensor data of the text model.
        projector: Tensor data of the projector.
        kv_cache: KV cache for :attr:`n_ctx` cells.
        compute: Compute buffers: the text model's and the image encoder's.
        total: The sum of the four.
        context: Tokens the search needs in the context (see :func:`estimate_need`).
        n_ctx: Cells the KV cache is sized for: the larger of the requested context and
            :attr:`context`, padded to 256 as llama.cpp pads it.
        warnings: Problems that do not stop a load (the context is too small for the search,
            or longer than the model was trained for).
        detail: The numbers the estimate was made from; None for made-up needs.
    """

    weights: int
    projector: int
    kv_cache: int
    compute: int
    total: int
    context: int
    n_ctx: int = 0
    warnings: tuple[str, ...] = ()
    detail: NeedDetail | None = None

    def with_weights(self, weights: int) -> Need:
        """The same need with other weights (another quantization of the model)."""
        return replace(self, weights=weights, total=self.total - self.weights + weights)

    def with_context(self, n_ctx: int) -> Need:
        """The same need with the KV cache and compute buffers of another context size.

        Without :attr:`detail`, only the KV cache is scaled.
        """
        n_ctx = _pad(n_ctx)
        if self.detail is None:
            kv = self.kv_cache * n_ctx // max(self.n_ctx, 1)
            return replace(self, kv_cache=kv, total=self.total - self.kv_cache + kv, n_ctx=n_ctx)
        return need_from_detail(self.detail, weights=self.weights, projector=self.projector,
                                context=self.context, n_ctx=n_ctx, warnings=self.warnings)


def _tensor_bytes(info: GGUFInfo) -> tuple[int, int]:
    """Bytes of tensor data and number of parameters, from the header's shapes and types."""
    n_bytes = n_params = 0
    for dims, type_name in info.tensors.values():
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType[type_name]]
        count = math.prod(dims)
        n_params += count
        n_bytes += count * type_size // block
    return n_bytes, n_params


def _as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _per_layer(value: object, n_layer: int, default: int) -> list[int]:
    """A scalar or per-layer metadata value as one number per layer.

    Arrays too long to have been decoded (:class:`LongArray`) fall back to ``default``.
    """
    if isinstance(value, list) and value and all(_as_int(v) is not None for v in value):
        values = [int(v) for v in value][:n_layer]
        return values + [values[-1]] * (n_layer - len(values))
    scalar = _as_int(value)
    return [default if scalar is None else scalar] * n_layer


def _arch_value(info: GGUFInfo, suffix: str) -> object:
    return info.metadata.get(f"{info.architecture}.{suffix}")


def kv_bytes_per_token(info: GGUFInfo) -> int:
    """KV cache bytes per context cell of a text model, over all its layers.

    llama.cpp sizes the cache of layer ``il`` as ``n_embd_k_gqa(il) + n_embd_v_gqa(il)``
    elements per cell (src/llama-kv-cache.cpp), where (src/llama-hparams.cpp)
    ``n_embd_k_gqa(il) = n_embd_head_k * n_head_kv(il)`` and likewise for V, and
    (src/llama-model.cpp, load_hparams) ``n_embd_head_k = n_embd / n_head(0)`` unless
    ``{arch}.attention.key_length`` says otherwise (``value_length`` for V).
    ``head_count_kv`` defaults to ``head_count`` and may be per layer (0: no KV there).
    Sliding-window layers are counted at full size: more than llama.cpp allocates for them.
    """
    n_layer = _as_int(_arch_value(info, "block_count")) or 0
    n_embd = info.n_embd or 0
    head = _per_layer(_arch_value(info, "attention.head_count"), n_layer, 0)
    if n_layer == 0 or not head or head[0] <= 0:
        return 0
    head_kv_raw = _arch_value(info, "attention.head_count_kv")
    head_kv = _per_layer(head_kv_raw, n_layer, max(head))
    if head_kv_raw is None:
        head_kv = head
    head_k = _as_int(_arch_value(info, "attention.key_length")) or n_embd // head[0]
    head_v = _as_int(_arch_value(info, "attention.value_length")) or n_embd // head[0]
    elements = sum(head_k * kv + head_v * kv for kv in head_kv)
    return elements * KV_ELEMENT_BYTES


# Projector types whose encoder takes the image at (about) its own resolution, and the most
# tokens clip.cpp lets one image become (hparams.set_limit_image_tokens in clip.cpp) where known.
_DYNAMIC_TYPES: dict[str, int | None] = {
    "qwen2vl_merger": 4096, "qwen2.5vl_merger": 4096, "qwen3vl_merger": 4096,
    "qwen2.5o": 4096, "glm4v": 4096, "glm5v": 4096, "youtuvl": 4096, "exaone4_5": 4096,
    "mimovl": 4096, "ling3vl": 4096, "hunyuanvl": 4096, "paddleocr": 4096,
    "pixtral": 1024, "lightonocr": 1024, "kimivl": 4096, "kimik25": 4096,
    "dots_ocr": 4096, "dots3note_v": 4096, "lfm2": 256, "gemma4v": 1120, "gemma4uv": 1120,
    "step3vl": 4096, "minimax_m3": 4096, "deepseek4v": 4096, "cogvlm": None,
}  # fmt: skip
# Patch merging that is not in the metadata: tokens = patches / merge².
_DEFAULT_MERGE = {
    "qwen2vl_merger": 2, "qwen2.5vl_merger": 2, "qwen3vl_merger": 2, "qwen2.5o": 2,
    "glm4v": 2, "glm5v": 2, "gemma3": 4, "llama4": 2, "idefics3": 4, "internvl": 2,
    "pixtral": 2, "lightonocr": 2, "kimivl": 2, "kimik25": 2, "lfm2": 2, "gemma4v": 3,
    "gemma4uv": 3, "paddleocr": 2, "dots_ocr": 2, "mimovl": 2,
}  # fmt: skip
# Projectors that cut a large image into tiles of image_size and encode each (plus an
# overview), when the metadata does not say how many tiles at most.
_TILED = frozenset({"idefics3", "internvl", "llama4", "nemotron_v2_vl", "granite4_vision"})
_MAX_TILES = 12


def _image_shape(info: GGUFInfo) -> tuple[int, int]:
    """Tokens one image takes in the context and patches per encoder pass (conservative)."""
    md = info.metadata
    ptype = info.projector_type or ""
    patch = _as_int(md.get("clip.vision.patch_size")) or 14
    size = _as_int(md.get("clip.vision.image_size")) or 336
    merge = (
        _as_int(md.get("clip.vision.spatial_merge_size"))
        or _as_int(md.get("clip.vision.projector.scale_factor"))
        or _DEFAULT_MERGE.get(ptype, 1)
    )
    if ptype == "resampler":  # MiniCPM-V: a fixed number of queries per slice, up to 9 slices
        query = _as_int(md.get("clip.minicpmv_query_num")) or 96
        return query * 10, (size // patch) ** 2
    if ptype in _DYNAMIC_TYPES:
        side = IMAGE_MAX_SIDE // patch
        patches = side * side
        max_pixels = _as_int(md.get("clip.vision.image_max_pixels"))
        if max_pixels:
            patches = min(patches, max_pixels // (patch * patch))
        tokens = max(1, patches // (merge * merge))
        cap = _DYNAMIC_TYPES[ptype]
        if cap is not None and tokens > cap:
            tokens = cap
        return tokens, tokens * merge * merge
    patches = (size // patch) ** 2
    tokens = max(1, patches // (merge * merge))
    tiles = 1
    pinpoints = md.get("clip.vision.image_grid_pinpoints")
    if isinstance(pinpoints, list) and len(pinpoints) >= 2:  # LLaVA-NeXT: [w0, h0, w1, h1, ...]
        pairs = zip(pinpoints[::2], pinpoints[1::2], strict=False)
        tiles = 1 + max((int(w) // size) * (int(h) // size) for w, h in pairs)
    elif isinstance(pinpoints, LongArray) or md.get("clip.vision.mm_patch_merge_type") == (
        "spatial_unpad"
    ):
        tiles = 1 + 4 * 4  # the largest LLaVA-NeXT grid, to be safe
    elif ptype in _TILED or _as_int(md.get("clip.vision.preproc_max_tiles")):
        max_tiles = _as_int(md.get("clip.vision.preproc_max_tiles")) or _MAX_TILES
        grid = math.ceil(IMAGE_MAX_SIDE / size) ** 2
        tiles = 1 + min(max_tiles, grid)
    return tokens * tiles, patches


def estimate_image_tokens(mmproj: Path | str) -> int:
    """Tokens one image (at most :data:`IMAGE_MAX_SIDE` pixels a side) takes in the context.

    From the projector's header: ``(image_size / patch_size)²`` patches for fixed-resolution
    encoders, divided by the square of the patch merge (``spatial_merge_size``,
    ``projector.scale_factor`` or the type's known pooling), times the tiles of tiling
    projectors; for dynamic-resolution encoders (the Qwen-VL family, Pixtral, ...) the
    patches of a 2048-pixel square, capped as clip.cpp caps them. Errs on the high side.

    Raises:
        ModelFileError: The file cannot be read.
    """
    return _image_shape(inspect_gguf(mmproj))[0]


def _vision_compute(info: GGUFInfo, patches: int, tokens: int, n_embd_text: int,
                    flash_attn: bool) -> int:
    """Rough bytes to encode one image or tile: activations (f32) of ``patches`` rows of
    (3 × width + feed-forward) twice over, the attention scores (patches² × heads, f32)
    without flash attention, and the image embeddings handed to the text model."""
    md = info.metadata
    v_embd = _as_int(md.get("clip.vision.embedding_length")) or 1024
    v_ff = _as_int(md.get("clip.vision.feed_forward_length")) or 4 * v_embd
    v_head = _as_int(md.get("clip.vision.attention.head_count")) or 16
    size = 2 * patches * (3 * v_embd + v_ff) * 4
    if not flash_attn:
        size += patches * patches * v_head * 4
    return size + tokens * max(n_embd_text, 1) * 4


def _context_need(*, prompt_tokens: int, image_tokens: int, beam: int, max_stage_tokens: int,
                  max_judge_tokens: int, strategy: str, judged: bool,
                  check_reasoning: bool) -> int:
    """Context cells a search fills at its peak; see :func:`estimate_need`."""
    s, n, j = max_stage_tokens, max(1, beam), max_judge_tokens
    generated = n * 4 * s
    extra = 0
    if n > 1 and judged:
        whole = strategy == "best-of-n"
        response = 4 * s if whole else s
        hint = 0 if whole else 2 * s
        judges = (JUDGE_FIXED_TOKENS + prompt_tokens + hint
                  + (n - 1) * (2 * response + j + JUDGE_PER_PAIR_TOKENS))
        checks = 0
        if check_reasoning and not whole:
            checks = CHECK_FIXED_TOKENS + prompt_tokens + s + n * (s + 8)
        extra = max(judges, checks)
    return prompt_tokens + image_tokens + generated + extra


def _pad(n: int) -> int:
    return -(-n // CTX_PAD) * CTX_PAD


def _text_compute(detail: NeedDetail, n_ctx: int) -> int:
    return max(n_ctx * detail.attn_per_token, detail.logits) + detail.activations


def need_from_detail(detail: NeedDetail, *, weights: int, projector: int, context: int,
                     n_ctx: int, warnings: tuple[str, ...] = ()) -> Need:
    """A :class:`Need` from its model numbers, with the formulas of :func:`estimate_need`.

    Args:
        detail: The model numbers.
        weights: Bytes of the text model's tensor data.
        projector: Bytes of the projector's tensor data.
        context: Tokens the search needs.
        n_ctx: Cells of the KV cache (already padded).
        warnings: Carried over as they are.
    """
    kv = n_ctx * detail.kv_per_token
    compute = _text_compute(detail, n_ctx) + detail.vision_compute
    return Need(
        weights=weights, projector=projector, kv_cache=kv, compute=compute,
        total=weights + projector + kv + compute, context=context, n_ctx=n_ctx,
        warnings=warnings, detail=detail,
    )


def estimate_need(
    model: Path | str,
    mmproj: Path | str,
    *,
    n_ctx: int,
    beam: int,
    max_stage_tokens: int,
    flash_attn: bool = False,
    max_judge_tokens: int = 32,
    strategy: str = "stage",
    judged: bool = True,
    check_reasoning: bool = True,
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS,
    image_tokens: int | None = None,
    n_batch: int = 512,
) -> Need:
    """Estimates the memory and the context a model pair and a search need.

    Only the GGUF headers are read. The parts:

    * **weights**, **projector**: the tensor data of each file, from the shapes and types
      in its header (the file size less the header and padding).
    * **context** (tokens): one question's peak, with P = ``prompt_tokens``, I = image
      tokens, S = ``max_stage_tokens``, N = ``beam``, J = ``max_judge_tokens``::

          context = P + I + N·4·S + judging

      The prompt and image are evaluated once and shared by every sequence (forking a
      sequence shares its cells), but each candidate's generated cells are its own; N·4·S
      bounds the answer kept in the root plus N candidates for every strategy (best-of-N:
      N whole answers of 4·S; stage search: 3·S chosen + N·S). With N > 1 and a judge,
      ``judging`` is the larger of the tournament's N − 1 judge prompts, which stay cached
      until the segment ends (128 fixed + P for the question + hint 2·S + (N − 1) ×
      (2 responses + J + 16), a response being S, or 4·S for best-of-N, with no hint) and
      the reasoning checks (96 + P + S for the caption + N × (S + 8)).
    * **kv_cache**: ``n_ctx_alloc × Σ_layers (n_embd_k_gqa + n_embd_v_gqa) × 2`` bytes (F16),
      see :func:`kv_bytes_per_token`, where ``n_ctx_alloc`` is the larger of ``n_ctx`` and
      ``context``, padded to 256 as llama.cpp pads it: the cache the run really needs.
    * **compute**: a rough allowance, calibrated on llama.cpp's CPU compute buffer and
      erring high: with U = ``n_batch`` (the engine's micro-batch),
      ``max(n_ctx_alloc × U × a, U × n_vocab × 4) + U × (4·n_embd + 2·n_ff) × 4``, where the
      attention part ``a`` is ``(n_head + 1) × 4`` bytes (f32 scores and mask) without flash
      attention and 2 (the f16 mask) with it; plus the image encoder's, see
      :func:`estimate_image_tokens` and ``_vision_compute``.

    A context longer than ``n_ctx`` or than the model's trained context is reported in
    :attr:`Need.warnings` (and logged).

    Args:
        model: The text model GGUF.
        mmproj: Its projector GGUF.
        n_ctx: The context the engine is to be created with.
        beam: Candidates per segment.
        max_stage_tokens: Token budget per stage and candidate.
        flash_attn: Whether flash attention is used (llama.cpp's "auto" turns it on on
            every backend that has it, which is all common ones).
        max_judge_tokens: Token budget of a judge's verdict.
        strategy: "stage", "sentence" or "best-of-n".
        judged: Candidates are chosen by the model judging them (else by log-probability,
            which needs no judge prompts).
        check_reasoning: The text-only reasoning check runs before reasoning is judged.
        prompt_tokens: Tokens of the prompt without the image (template and question).
        image_tokens: Tokens of the image; None estimates them from the projector.
        n_batch: The engine's batch (and micro-batch) size.

    Returns:
        The estimate.

    Raises:
        ModelFileError: A file cannot be read as GGUF.
    """
    text = inspect_gguf(model)
    proj = inspect_gguf(mmproj)
    weights, params = _tensor_bytes(text)
    projector, _ = _tensor_bytes(proj)

    n_layer = _as_int(_arch_value(text, "block_count")) or 1
    n_embd = text.n_embd or 0
    heads = _per_layer(_arch_value(text, "attention.head_count"), n_layer, 0)
    n_head = max(heads) if heads else 0
    n_ff = max(_per_layer(_arch_value(text, "feed_forward_length"), n_layer, 4 * n_embd))
    embd = text.tensors.get("token_embd.weight")
    vocab = _arch_value(text, "vocab_size")
    tokens_list = text.metadata.get("tokenizer.ggml.tokens")
    n_vocab = (
        (embd[0][1] if embd and len(embd[0]) > 1 else None)
        or _as_int(vocab)
        or (tokens_list.length if isinstance(tokens_list, LongArray) else None)
        or (len(tokens_list) if isinstance(tokens_list, list) else 0)
    )
    n_ctx_train = _as_int(_arch_value(text, "context_length")) or 0

    est_tokens, patches = _image_shape(proj)
    if image_tokens is None:
        image_tokens = est_tokens
    else:
        patches = max(1, patches * image_tokens // max(est_tokens, 1))
    ubatch = max(1, n_batch)
    detail = NeedDetail(
        params=params,
        n_layer=n_layer,
        n_vocab=n_vocab,
        n_ctx_train=n_ctx_train,
        kv_per_token=kv_bytes_per_token(text),
        attn_per_token=ubatch * (2 if flash_attn else (n_head + 1) * 4),
        logits=ubatch * n_vocab * 4,
        activations=ubatch * (4 * n_embd + 2 * n_ff) * 4,
        vision_compute=_vision_compute(proj, patches, image_tokens, n_embd, flash_attn),
        image_tokens=image_tokens,
    )
    context = _context_need(
        prompt_tokens=prompt_tokens, image_tokens=image_tokens, beam=beam,
        max_stage_tokens=max_stage_tokens, max_judge_tokens=max_judge_tokens,
        strategy=strategy, judged=judged, check_reasoning=check_reasoning,
    )
    warnings = []
    if context > n_ctx:
        warnings.append(
            f"a search with beam width {beam} needs about {context} tokens of context, but the "
            f"context is {n_ctx}: raise the context size or lower the beam width or the stage "
            "budget"
        )
    if n_ctx_train and max(context, n_ctx) > n_ctx_train:
        warnings.append(
            f"the context ({max(context, n_ctx)} tokens) is longer than the model was "
            f"trained for ({n_ctx_train}); answers may degrade"
        )
    for warning in warnings:
        log.warning("%s: %s", Path(model).name, warning)
    return need_from_detail(detail, weights=weights, projector=projector, context=context,
                            n_ctx=_pad(max(n_ctx, context)), warnings=tuple(warnings))


# --------------------------------------------------------------------------- fit


@dataclass(frozen=True)
class Fit:
    """Where a load goes, or why it cannot.

    Attributes:
        fits: Whether the load fits in memory.
        gpu_layers: Layers to offload (EngineSettings.gpu_layers): -1 all, 0 none.
        where: "gpu" (all on the GPU), "gpu+cpu" (split), "cpu" or "none".
        message: One sentence for the user.
        recommended_quant: The largest of Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q3_K_M, Q2_K whose
            file of this model would fit here; None if none would or the size is unknown.
        warnings: The need's warnings (context too small, ...).
        need: The need that was planned.
    """

    fits: bool
    gpu_layers: int
    where: str
    message: str
    recommended_quant: str | None
    warnings: tuple[str, ...] = ()
    need: Need | None = field(default=None, repr=False)


def _size(n: int) -> str:
    if n >= 10**9:
        return f"{n / 10**9:.1f} GB"
    return f"{max(n, 0) / 10**6:.0f} MB"


@dataclass(frozen=True)
class _Layout:
    fits: bool
    gpu_layers: int
    where: Where
    gpu_bytes: int
    ram_bytes: int


def _layout(need: Need, hw: Hardware, n_layer: int, gpu_layers: int) -> _Layout:
    """Places the load: on the GPU, split, or in RAM (see :func:`plan_fit`)."""
    ram, vram = hw.usable_ram, hw.usable_vram
    n_layer = max(1, n_layer)
    text_compute = _text_compute(need.detail, need.n_ctx) if need.detail else need.compute
    fixed_gpu = need.compute + need.projector  # compute buffers (text, image) and projector
    per_layer = (need.weights + need.kv_cache) / n_layer

    def cpu() -> _Layout:
        return _Layout(need.total <= ram, 0, "cpu", 0, need.total)

    def split(k: int) -> _Layout:
        if k >= n_layer:
            gpu_bytes, ram_bytes = need.total, need.total if hw.unified_memory else 0
            return _Layout(gpu_bytes <= vram and ram_bytes <= ram, -1, "gpu", gpu_bytes,
                           ram_bytes)
        gpu_bytes = int(fixed_gpu + k * per_layer)
        # the layers left on the CPU, and a host compute buffer for them
        ram_bytes = (need.total if hw.unified_memory
                     else int((n_layer - k) * per_layer) + text_compute)
        return _Layout(gpu_bytes <= vram and ram_bytes <= ram, k, "gpu+cpu", gpu_bytes,
                       ram_bytes)

    if not hw.gpu_offload or not hw.gpus or gpu_layers == 0:
        return cpu()
    if gpu_layers > 0:
        return split(min(gpu_layers, n_layer))
    whole = split(n_layer)
    if whole.fits:
        return whole
    k = int((vram - fixed_gpu) // per_layer) if per_layer > 0 and vram > fixed_gpu else 0
    k = min(k, n_layer - 1)
    if k >= 1:
        layout = split(k)
        if layout.fits:
            return layout
    return cpu()


def _capacity(hw: Hardware) -> int:
    """Memory a load can use, for messages: RAM, plus VRAM where it is separate."""
    if hw.gpu_offload and hw.gpus and not hw.unified_memory:
        return hw.usable_ram + hw.usable_vram
    return hw.usable_ram


def _recommend(need: Need, hw: Hardware, n_layer: int, gpu_layers: int) -> tuple[str, int] | None:
    """The largest quantization whose file of this model fits, and its size in bytes."""
    if need.detail is None or need.detail.params <= 0:
        return None
    for name, bits in QUANT_BITS_PER_WEIGHT.items():
        weights = int(need.detail.params * bits / 8)
        if _layout(need.with_weights(weights), hw, n_layer, gpu_layers).fits:
            return name, weights
    return None


def _largest_context(need: Need, hw: Hardware, n_layer: int, gpu_layers: int) -> int:
    """The largest context (a multiple of 256) that fits with these weights; 0 if none."""
    lo, hi = 0, need.n_ctx // CTX_PAD
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _layout(need.with_context(mid * CTX_PAD), hw, n_layer, gpu_layers).fits:
            lo = mid
        else:
            hi = mid - 1
    return lo * CTX_PAD


def plan_fit(need: Need, hardware: Hardware, *, n_layer: int | None = None,
             gpu_layers: int = -1) -> Fit:
    """Decides where a load goes.

    Usable memory is the free memory less a reserve (:attr:`Hardware.usable_ram`,
    :attr:`Hardware.usable_vram`). With ``gpu_layers`` -1 (automatic):

    1. all on the GPU if ``need.total`` fits in usable VRAM;
    2. else as many layers as fit: the GPU holds the compute buffers and the projector
       (libmtmd uses the GPU whenever layers are offloaded) plus k layers of
       (weights + KV cache) / n_layer each; the other layers, and a host compute buffer,
       must fit in usable RAM;
    3. else (or without a GPU) all in RAM: ``need.total`` must fit in usable RAM.

    With unified memory (Apple silicon, integrated GPUs) everything also takes RAM. Several
    GPUs count as one with their memory added. A fixed ``gpu_layers`` (0 or more) is
    checked as given. What does not fit gets fits=False and a message saying what would.

    Args:
        need: From :func:`estimate_need`.
        hardware: From :func:`detect_hardware`.
        n_layer: Transformer blocks of the model; None takes them from ``need.detail``.
        gpu_layers: The requested offload: -1 automatic, 0 none, k that many layers.

    Returns:
        The plan, with the largest quantization of this model that would fit.
    """
    if n_layer is None:
        n_layer = need.detail.n_layer if need.detail else 1
    layout = _layout(need, hardware, n_layer, gpu_layers)
    quant = _recommend(need, hardware, n_layer, gpu_layers)
    quant_name = quant[0] if quant else None
    if layout.fits:
        if layout.where == "gpu":
            message = (f"fits on the GPU: needs {_size(need.total)}, "
                       f"{_size(hardware.usable_vram)} free")
        elif layout.where == "gpu+cpu":
            message = (f"{layout.gpu_layers} of {n_layer} layers fit on the GPU, the rest "
                       f"runs from RAM (slower): needs {_size(need.total)}")
        else:
            message = (f"fits in RAM: needs {_size(need.total)}, "
                       f"{_size(hardware.usable_ram)} free")
            if hardware.gpu_offload and hardware.gpus and gpu_layers != 0:
                message += "; the GPU has no room for a layer"
        return Fit(True, layout.gpu_layers, layout.where, message, quant_name,
                   need.warnings, need)

    if gpu_layers > 0 and hardware.gpu_offload and hardware.gpus:
        auto = _layout(need, hardware, n_layer, -1)
        if auto.fits:
            what = "all layers" if auto.gpu_layers < 0 else f"{auto.gpu_layers} layers"
            room = "GPU" if layout.gpu_bytes > hardware.usable_vram else "RAM"
            message = (f"{min(gpu_layers, n_layer)} layers on the GPU need "
                       f"{_size(max(layout.gpu_bytes, layout.ram_bytes))}, more than the "
                       f"{room} has free: offload {what} (or choose automatic)")
            return Fit(False, gpu_layers, "none", message, quant_name, need.warnings, need)

    options = []
    if quant and quant[1] < need.weights:
        options.append(f"a {quant[0]} of this model (about {_size(quant[1])})")
    ctx = _largest_context(need, hardware, n_layer, gpu_layers)
    if ctx >= CTX_PAD and ctx >= need.context:
        options.append(f"a context of at most {ctx} tokens")
    elif ctx >= CTX_PAD:
        options.append(f"a context of at most {ctx} tokens with a smaller beam or stage "
                       f"budget (this search wants {need.context})")
    head = f"needs {_size(need.total)}, {_size(_capacity(hardware))} free"
    if options:
        message = f"{head}: {' or '.join(options)} would fit"
    else:
        message = f"{head}: not even a Q2_K of this model would fit; choose a smaller model"
    return Fit(False, layout.gpu_layers, "none", message, quant_name, need.warnings, need)


def check_fit(
    model: Path | str,
    mmproj: Path | str,
    engine: EngineSettings | None = None,
    search: SearchSettings | None = None,
    *,
    hardware: Hardware | None = None,
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS,
    image_tokens: int | None = None,
) -> Fit:
    """Estimates a pair's need for these settings and plans it on this (or given) hardware.

    Flash attention "auto" counts as on: llama.cpp turns it on where the backend has it.
    A warning is added when ``engine.n_seq_max`` is below what the beam width needs.

    Args:
        model: The text model GGUF.
        mmproj: Its projector GGUF.
        engine: Engine settings; the defaults if None.
        search: Search settings; the defaults if None.
        hardware: The hardware; :func:`detect_hardware` if None.
        prompt_tokens: Tokens of the prompt without the image.
        image_tokens: Tokens of the image; None estimates them.

    Returns:
        The plan; ``Fit.need`` holds the estimate.

    Raises:
        ModelFileError: A file cannot be read as GGUF.
    """
    from models.engine import EngineSettings
    from models.search_settings import SearchSettings, sequences_needed

    engine = engine or EngineSettings()
    search = search or SearchSettings()
    need = estimate_need(
        model, mmproj,
        n_ctx=engine.n_ctx, beam=search.beam, max_stage_tokens=search.max_stage_tokens,
        flash_attn=engine.flash_attn != "off", max_judge_tokens=search.max_judge_tokens,
        strategy=search.strategy, judged=search.select == "judge",
        check_reasoning=search.check_reasoning, prompt_tokens=prompt_tokens,
        image_tokens=image_tokens, n_batch=engine.n_batch,
    )
    if engine.n_seq_max < sequences_needed(search.beam):
        need = replace(need, warnings=(*need.warnings, (
            f"beam width {search.beam} needs {sequences_needed(search.beam)} sequences, "
            f"but the engine allows {engine.n_seq_max}"
        )))
    fit = plan_fit(need, hardware or detect_hardware(), gpu_layers=engine.gpu_layers)
    return fit
