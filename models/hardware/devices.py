"""What this computer offers llama.cpp: its backend devices, RAM and CPUs.

:func:`detect_hardware` lists llama.cpp's backend devices (CPU, GPUs, accelerators) with
their memory, through ggml's device API (a ctypes binding of ggml/include/ggml-backend.h),
and reads the RAM and CPU count of the machine: RAM from /proc/meminfo on Linux (capped by a
cgroup limit), GlobalMemoryStatusEx on Windows and sysctl / host_statistics64 on macOS.
:class:`Hardware` also says how much of that memory a load may use, less a reserve.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from stagewise.models.inference.ggml_api import bind, ggml_library

__all__ = [
    "RAM_RESERVE",
    "RAM_RESERVE_SHARE",
    "VRAM_RESERVE",
    "VRAM_RESERVE_SHARE",
    "Device",
    "DeviceKind",
    "GiB",
    "Hardware",
    "MiB",
    "detect_hardware",
]

log = logging.getLogger("stagewise.hardware")

DeviceKind = Literal["cpu", "gpu", "igpu", "accel"]

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
        repack: The weight types llama.cpp's CPU backend keeps a re-laid second copy of,
            with the row multiple each needs
            (:func:`~stagewise.models.inference.cpu_buffers.repacked_types`).
    """

    devices: tuple[Device, ...]
    gpu_offload: bool
    ram_total: int
    ram_available: int
    cpu_count: int
    unified_memory: bool = False
    repack: tuple[tuple[str, int], ...] = ()

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


def _backend_devices() -> tuple[Device, ...]:
    """ggml's device list: ggml_backend_dev_count / _get (libggml) and the device getters
    (libggml-base), with the C signatures of ggml/include/ggml-backend.h."""
    reg_lib = ggml_library(["ggml"])
    dev_lib = ggml_library(["ggml-base", "ggml"])
    if reg_lib is None or dev_lib is None:
        return ()
    vp, size_t = ctypes.c_void_p, ctypes.c_size_t
    try:
        # size_t ggml_backend_dev_count(void); ggml_backend_dev_t ggml_backend_dev_get(size_t)
        count = bind(reg_lib, "ggml_backend_dev_count", size_t, [])
        get = bind(reg_lib, "ggml_backend_dev_get", vp, [size_t])
        # const char * ggml_backend_dev_name / _description(ggml_backend_dev_t)
        name = bind(dev_lib, "ggml_backend_dev_name", ctypes.c_char_p, [vp])
        description = bind(dev_lib, "ggml_backend_dev_description", ctypes.c_char_p, [vp])
        # enum ggml_backend_dev_type ggml_backend_dev_type(ggml_backend_dev_t)
        kind = bind(dev_lib, "ggml_backend_dev_type", ctypes.c_int, [vp])
        # void ggml_backend_dev_memory(ggml_backend_dev_t, size_t * free, size_t * total)
        memory = bind(dev_lib, "ggml_backend_dev_memory", None,
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
    # loads llama.cpp; initializes the backend
    from stagewise.models.inference.cpu_buffers import repacked_types
    from stagewise.models.inference.llama_runtime import supports_gpu_offload

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
        repack=repacked_types(),
    )
