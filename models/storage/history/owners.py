"""Who writes a run: its owner process, so that only runs whose owner died are repaired.

An owner is ``"<host>/<boot id>/<pid>/<start time>"``. The boot id and the process's start
time (Linux ``/proc``; empty elsewhere) tell a live owner from a later process that was given
the same pid. A run owned on another host is never repaired from here: its owner cannot be
seen.
"""

from __future__ import annotations

import os
import socket
import sys
from functools import cache

__all__ = ["current_owner", "owner_alive"]


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            return file.read().strip()
    except OSError:
        return ""


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """A process's state letter and start time from ``/proc/<pid>/stat``; None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as file:
            fields = file.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _start_marker(pid: int) -> str:
    stat = _proc_stat(pid)
    return stat[1] if stat is not None else ""


@cache
def _this_process() -> tuple[str, str, int, str]:
    pid = os.getpid()
    return socket.gethostname(), _boot_id(), pid, _start_marker(pid)


def current_owner() -> str:
    """This process as the owner of the runs it starts."""
    host, boot, pid, started = _this_process()
    if pid != os.getpid():  # a forked child is another owner
        _this_process.cache_clear()
        host, boot, pid, started = _this_process()
    return f"{host}/{boot}/{pid}/{started}"


def _pid_running(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie counts as gone)."""
    if sys.platform == "win32":
        return _windows_pid_running(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _proc_stat(pid)
    return stat is None or stat[0] not in ("Z", "X")


def _windows_pid_running(pid: int) -> bool:  # pragma: no cover (Windows only)
    import ctypes

    kernel = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.GetLastError() == 5  # access denied: it exists
    try:
        code = ctypes.c_ulong()
        return bool(kernel.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259
    finally:
        kernel.CloseHandle(handle)


def owner_alive(owner: str | None) -> bool:
    """Whether the process that owns a run may still be writing it.

    Args:
        owner: From :func:`current_owner`; None for runs saved before owners were kept.

    Returns:
        False when the owner is known to be gone (or unknown); True when it lives, or lives
        on another host, or the text cannot be understood.
    """
    if owner is None:
        return False
    if owner == current_owner():
        return True  # this process: no need to ask /proc
    parts = owner.split("/")
    if len(parts) != 4 or not parts[2].isdigit():
        return True
    host, boot, pid, started = parts[0], parts[1], int(parts[2]), parts[3]
    here, this_boot, _, _ = _this_process()
    if host != here:
        return True
    if boot and this_boot and boot != this_boot:
        return False
    if not _pid_running(pid):
        return False
    return not started or _start_marker(pid) in ("", started)
