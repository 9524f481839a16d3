"""The packaging files agree with the app: the command, the icon, the bundled data.

Building the bundles is too slow for the test suite; ``packaging/linux/check.py`` builds
and runs the Linux one (see packaging/README.md)."""

from __future__ import annotations

import configparser
import runpy
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"


def test_the_desktop_entry_starts_the_installed_command_with_its_icon():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(PACKAGING / "linux" / "stagewise.desktop")
    desktop = entry["Desktop Entry"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert desktop["Exec"] in scripts
    assert desktop["Type"] == "Application" and desktop["Terminal"] == "false"
    with Image.open(PACKAGING / "icons" / f"{desktop['Icon']}.png") as icon:
        assert icon.size == (256, 256)


def test_the_deb_control_template_fills_in_and_names_qts_xcb_libraries():
    control = (PACKAGING / "linux" / "control.in").read_text()
    assert "@VERSION@" in control and "@SIZE@" in control
    depends = next(line for line in control.splitlines() if line.startswith("Depends:"))
    for library in ("libxcb-cursor0", "libxkbcommon-x11-0", "libegl1", "libfontconfig1"):
        assert library in depends


def test_the_spec_bundles_the_data_and_leaves_the_build_time_folders_out():
    spec = (PACKAGING / "stagewise.spec").read_text()
    assert '"stagewise/models/data"' in spec  # where stagewise.models looks for it
    assert 'BUILD_TIME = ("stagewise.models.recipes", "stagewise.models.build")' in spec
    assert "*BUILD_TIME" in spec  # in the excludes, not only left out of the hidden imports
    assert 'collect_dynamic_libs("llama_cpp")' in spec
    assert (ROOT / "models" / "data" / "demo").is_dir()


def test_the_icons_are_drawn_for_every_platform(tmp_path, monkeypatch):
    module = runpy.run_path(str(PACKAGING / "make_icons.py"))
    monkeypatch.setitem(module["main"].__globals__, "ICONS", tmp_path)
    module["main"]()
    assert {p.name for p in tmp_path.iterdir()} == {"stagewise.png", "stagewise.ico",
                                                    "stagewise.icns"}


def test_the_check_says_to_build_first_when_there_is_no_bundle(tmp_path):
    done = subprocess.run([sys.executable, str(PACKAGING / "linux" / "check.py"), "--dist",
                           str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "build first" in done.stderr


@pytest.mark.parametrize("script", ["linux/build.sh", "macos/build.sh", "common.sh"])
def test_the_shell_scripts_parse(script):
    assert subprocess.run(["bash", "-n", str(PACKAGING / script)]).returncode == 0


PORTABLE = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | "
            "BMI2 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |")
NATIVE = PORTABLE.replace("BMI2 = 1 |", "BMI2 = 1 | AVX512 = 1 | AMX_INT8 = 1 |")


def _report(info: str, offered: str) -> str:
    return (f"== llama.cpp ==\n  system info       {info}\n\n"
            f"== Weight buffers ==\n  offered  {offered}\n  used     {offered}\n")


@pytest.mark.parametrize(("info", "offered", "problems"), [
    (PORTABLE, "CPU_REPACK", []),
    (NATIVE, "CPU_REPACK", ["native build: it has AVX512, AMX_INT8"]),
    (PORTABLE, "AMX, CPU_REPACK", ["offers the AMX buffer type"]),
    ("", "CPU_REPACK", ["no llama.cpp system info"]),
])
def test_the_check_tells_a_native_llama_cpp_from_the_portable_one(info, offered, problems):
    check = runpy.run_path(str(PACKAGING / "linux" / "check.py"))
    found = check["portability_problems"](_report(info, offered))
    assert len(found) == len(problems)
    for text, words in zip(found, problems, strict=True):
        assert words in text


def test_the_check_reads_the_report_stagewise_doctor_prints():
    check = runpy.run_path(str(PACKAGING / "linux" / "check.py"))
    done = subprocess.run([sys.executable, "-m", "stagewise.desktop", "doctor", "--no-smoke"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert check["_line"](done.stdout, "system info").startswith("CPU :")
    assert check["_line"](done.stdout, "offered")
