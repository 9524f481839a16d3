"""Check the Linux bundle by running it as a user would, from the installed files.

    python packaging/linux/check.py [--build] [--runs 5] [--dist dist]

1. ``--build`` first runs ``packaging/linux/build.sh``.
2. The ``.deb`` is unpacked into a scratch root (``dpkg-deb -x``: the files land where
   ``dpkg -i`` puts them: ``/opt/stagewise``, ``/usr/bin/stagewise``, the desktop entry
   and the icon), with no root rights and no change to this system.
3. From there, under Xvfb, ``stagewise --self-test --screenshot`` must pass (all four
   stages arrive from the bundled demo model), and ``stagewise ask`` must answer a
   question about the example picture with all four stages.
4. ``stagewise doctor`` from the bundle must exit 0 (its smoke answer passed), and the
   llama.cpp it reports must be the portable build: no instruction set beyond x86-64's
   AVX2 level compiled in (no AVX-512, AVX-VNNI or AMX code paths), and no AMX buffer type
   offered. A bundle built from pip's cache of the build machine's native wheel fails here.
5. Reported: the sizes of the ``.deb`` and the ``.tar.gz``, the installed size, and the
   time from launch to the window being shown (the median of ``--runs`` launches; the
   app writes the time it first showed the window with ``--startup-report``).

Budgets (exit status 1 when one is missed): installed size under 400 MB, window shown
within 3 s. Each run uses private data and config folders, so nothing of the user's is
read or changed. A JSON summary goes to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INSTALLED_BUDGET_MB = 400
SHOWN_BUDGET_S = 3.0
STAGE_NAMES = ("summary", "caption", "reasoning", "conclusion")
# CPU features llama.cpp's system info lists only when compiled for a newer CPU than the
# bundle's AVX2 baseline (GGML_NATIVE=OFF); their presence means a native build
NATIVE_ONLY = ("AVX512", "AVX_VNNI", "AMX")


def _megabytes(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 1e6
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir()) / 1e6


def _env(scratch: Path) -> dict[str, str]:
    """This environment without Python's variables (the bundle must not need them), and
    private Stagewise folders."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("PYTHON") and k not in ("VIRTUAL_ENV", "LD_LIBRARY_PATH")}
    return {**clean, "STAGEWISE_DATA_DIR": str(scratch / "data"),
            "STAGEWISE_CONFIG_DIR": str(scratch / "config"),
            "STAGEWISE_CACHE_DIR": str(scratch / "cache"), "QT_QPA_PLATFORM": "xcb"}


def _under_xvfb(command: list[str]) -> list[str]:
    return ["xvfb-run", "-a", "-s", "-screen 0 1440x900x24", *command]


def _run(command: list[str], env: dict[str, str], timeout: float = 300
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def _line(report: str, label: str) -> str:
    """The value of one ``label  value`` row of the doctor's report."""
    for line in report.splitlines():
        if line.strip().startswith(label + " "):
            return line.strip()[len(label):].strip()
    return ""


def portability_problems(report: str) -> list[str]:
    """What in ``stagewise doctor``'s report shows a llama.cpp built for this CPU only."""
    info = _line(report, "system info")
    if not info:
        return ["the doctor's report has no llama.cpp system info"]
    features = [item.split("=")[0].strip() for item in info.split("|") if "= 1" in item]
    native = [f for f in features if f.startswith(NATIVE_ONLY)]
    problems = [f"the bundled llama.cpp is a native build: it has {', '.join(native)}"
                ] if native else []
    if "AMX" in _line(report, "offered"):
        problems.append("the bundled llama.cpp offers the AMX buffer type")
    return problems


def missing_dependencies(deb: Path) -> list[str]:
    """The packages the ``.deb`` depends on that this system lacks (``dpkg -x`` installs
    none of them, and without Qt's xcb libraries the window cannot start)."""
    depends = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True,
                             text=True, check=True).stdout
    names = [item.split("(")[0].strip() for item in depends.split(",") if item.strip()]
    missing = []
    for name in names:
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name],
                                capture_output=True, text=True).stdout
        if "install ok installed" not in status:
            missing.append(name)
    return missing


def check(dist: Path, runs: int) -> dict[str, object]:
    debs = sorted(dist.glob("stagewise_*_amd64.deb"))
    tars = sorted(dist.glob("stagewise-*-linux-x86_64.tar.gz"))
    if not debs or not tars:
        raise SystemExit(f"no .deb or .tar.gz in {dist}: build first (--build)")
    deb, tar = debs[-1], tars[-1]
    missing = missing_dependencies(deb)
    if missing:
        raise SystemExit(f"this system lacks packages the .deb depends on (apt would install "
                         f"them with it): sudo apt install {' '.join(missing)}")
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="stagewise-check-") as temp:
        scratch = Path(temp)
        root = scratch / "root"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        program = root / "opt" / "stagewise" / "stagewise"
        link = root / "usr" / "bin" / "stagewise"
        if os.readlink(link) != "/opt/stagewise/stagewise":
            failures.append(f"/usr/bin/stagewise points to {os.readlink(link)}")
        for needed in ("usr/share/applications/stagewise.desktop",
                       "usr/share/icons/hicolor/256x256/apps/stagewise.png"):
            if not (root / needed).is_file():
                failures.append(f"{needed} is missing")
        env = _env(scratch)

        shot = scratch / "self-test.png"
        test = _run(_under_xvfb([str(program), "--self-test", "--screenshot", str(shot)]), env)
        if test.returncode != 0 or "all four stages arrived" not in test.stdout:
            failures.append(f"self-test failed ({test.returncode}): {test.stdout}{test.stderr}")
        if shot.is_file():
            shutil.copy(shot, dist / "self-test.png")

        example = (root / "opt" / "stagewise" / "_internal" / "stagewise" / "models" / "data"
                   / "example.png")
        ask = _run([str(program), "ask", "--image", str(example), "--question",
                    "How many red circles are there?", "--json"], env)
        answer: dict[str, object] = {}
        if ask.returncode == 0:
            answer = json.loads(ask.stdout)
            stages = answer.get("stages", {})
            if not all(str(stages.get(name, "")).strip() for name in STAGE_NAMES):
                failures.append(f"ask: a stage is empty: {stages}")
        else:
            failures.append(f"ask failed ({ask.returncode}): {ask.stderr}")

        doctor = _run([str(program), "doctor"], env)
        if doctor.returncode != 0:
            failures.append(f"doctor failed ({doctor.returncode}): {doctor.stdout[-2000:]}"
                            f"{doctor.stderr[-2000:]}")
        failures += portability_problems(doctor.stdout)

        shown: list[float] = []
        for i in range(runs):
            report = scratch / f"shown-{i}.txt"
            launched = time.time()
            done = _run(_under_xvfb([str(program), "--self-test", "--startup-report",
                                     str(report)]), env)
            if done.returncode != 0 or not report.is_file():
                failures.append(f"launch {i} failed ({done.returncode}): {done.stderr}")
                continue
            shown.append(float(report.read_text()) - launched)
        installed = _megabytes(root)

    summary = {
        "deb": deb.name, "deb_mb": round(_megabytes(deb), 1),
        "tar": tar.name, "tar_mb": round(_megabytes(tar), 1),
        "installed_mb": round(installed, 1),
        "shown_s": [round(s, 2) for s in shown],
        "shown_median_s": round(statistics.median(shown), 2) if shown else None,
        "self_test": test.stdout.strip().splitlines()[-1:] if test.stdout.strip() else [],
        "conclusion": answer.get("stages", {}).get("conclusion") if answer else None,
        "llama_system_info": _line(doctor.stdout, "system info"),
        "weight_buffers": _line(doctor.stdout, "why"),
        "failures": failures,
    }
    if installed > INSTALLED_BUDGET_MB:
        failures.append(f"installed size {installed:.0f} MB is over {INSTALLED_BUDGET_MB} MB")
    if shown and statistics.median(shown) > SHOWN_BUDGET_S:
        failures.append(f"the window took {statistics.median(shown):.2f} s to show "
                        f"(budget {SHOWN_BUDGET_S} s)")
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", action="store_true", help="build the bundle first")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    parser.add_argument("--runs", type=int, default=5, help="launches timed (5)")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()
    if args.build:
        subprocess.run([str(ROOT / "packaging" / "linux" / "build.sh"), str(args.dist)],
                       check=True)
    summary = check(args.dist, args.runs)
    print(f"{summary['deb']}: {summary['deb_mb']} MB; {summary['tar']}: {summary['tar_mb']} MB")
    print(f"installed: {summary['installed_mb']} MB (budget {INSTALLED_BUDGET_MB} MB)")
    print(f"window shown after launch: median {summary['shown_median_s']} s of "
          f"{summary['shown_s']} (budget {SHOWN_BUDGET_S} s)")
    print(f"self-test: {' '.join(summary['self_test'])}")
    print(f"ask, conclusion: {summary['conclusion']!r}")
    print(f"bundled llama.cpp: {summary['llama_system_info']}")
    print(f"weight buffers: {summary['weight_buffers']}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    for failure in summary["failures"]:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
