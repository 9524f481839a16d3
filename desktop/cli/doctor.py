"""``stagewise doctor``: one screen for bug reports, also shown by Help → Diagnostics.

The report (:mod:`stagewise.models.doctor`) ends with a smoke answer from the demo model, run in a
child ``stagewise doctor --smoke-child`` process: a crash inside llama.cpp is then one line
of the report (with the signal), and the doctor still prints everything else and exits
non-zero.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys

from stagewise.models.doctor import SmokeResult, collect, render, smoke_answer
from stagewise.models.storage.app_settings import AppSettings, load_settings

SMOKE_TIMEOUT_S = 300.0


def add_parser(sub: argparse._SubParsersAction) -> None:
    doctor = sub.add_parser(
        "doctor", help="versions, llama.cpp's view of this machine, models, a smoke answer",
        description="Print what a bug report needs: Stagewise and llama.cpp versions, "
                    "llama.cpp's system info, devices and free memory, the weight buffers "
                    "the engine uses and why, folders, installed models and whether each "
                    "validates, and a smoke answer from the demo model. Exits 1 when the "
                    "smoke answer fails.")
    doctor.add_argument("--no-smoke", action="store_true",
                        help="leave out the smoke answer (nothing is loaded)")
    doctor.add_argument("--smoke-child", action="store_true", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.smoke_child:
        result = smoke_answer(allow_amx=settings.engine.allow_amx)
        print(result.to_json())
        return 0 if result.ok else 1
    text, ok = report(settings, smoke=not args.no_smoke)
    sys.stdout.write(text)
    return 0 if ok else 1


def report(settings: AppSettings, *, smoke: bool = True) -> tuple[str, bool]:
    """The whole report as text, and whether the smoke answer passed (True without one)."""
    sections = collect(settings)
    if not smoke:
        return render(sections), True
    result = isolated_smoke_answer()
    return render([*sections, result.section()]), result.ok


def _self_command() -> list[str]:
    """How to start this program again: the bundle's executable, or this Python."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "stagewise.desktop"]


def isolated_smoke_answer(timeout_s: float = SMOKE_TIMEOUT_S) -> SmokeResult:
    """:func:`stagewise.models.doctor.smoke_answer` in a child process; a crash is a failed
    result."""
    command = [*_self_command(), "doctor", "--smoke-child"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return SmokeResult(False, error=f"no answer within {timeout_s:.0f} s")
    except OSError as error:
        return SmokeResult(False, error=f"could not start {command[0]}: {error}")
    lines = done.stdout.strip().splitlines()
    try:
        return SmokeResult.from_json(lines[-1])
    except (IndexError, ValueError):
        pass
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        why = f"the answering process crashed ({name})"
    else:
        why = f"the answering process exited {done.returncode}"
    tail = done.stderr.strip().splitlines()[-3:]
    return SmokeResult(False, error=why + (": " + " | ".join(tail) if tail else ""))
