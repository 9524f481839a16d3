"""The wheel installs models/ and desktop/ as stagewise.models and stagewise.desktop.

The import root is the distribution's own name, so nothing generic called ``models`` or
``desktop`` lands in site-packages. The wheel is built here with setuptools and imported
from its own folder, with site-packages' editable finder out of the way.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())


def package_folders() -> set[str]:
    """Every folder of models/ and desktop/ holding Python files, as a package name."""
    found = set()
    for top in ("models", "desktop"):
        for path in (ROOT / top).rglob("*.py"):
            parts = path.parent.relative_to(ROOT).parts
            if "__pycache__" not in parts:
                found.add("stagewise." + ".".join(parts))
    return found


def test_the_package_list_names_every_package_folder():
    listed = set(CONFIG["tool"]["setuptools"]["packages"])
    assert listed == package_folders()
    tracked = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.split())
    for name in listed:
        init = Path(*name.split(".")[1:], "__init__.py")
        assert (ROOT / init).is_file(), f"{init.parent} is not a regular package"
        assert init.as_posix() in tracked, f"{init} is not in git (ignored?)"


def test_no_module_imports_the_old_top_level_names():
    """``models`` and ``desktop`` are folders, not import names: an import of either would
    work only from a checkout."""
    offenders = []
    for top in ("models", "desktop", "tests", "bench", "packaging"):
        for path in (ROOT / top).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom)
                         and node.level == 0 else [])
                offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {name}" for name in names
                              if name.split(".")[0] in ("models", "desktop")]
    assert not offenders


def test_no_process_is_started_with_the_old_module_names():
    """``python -m desktop`` works only where a checkout is on the path; the installed
    names are ``stagewise.desktop`` and ``stagewise.models``."""
    pattern = re.compile(r"""["']-m["'],\s*["'](models|desktop)\b""")
    offenders = [f"{path.relative_to(ROOT)}:{no}"
                 for top in ("models", "desktop", "tests", "bench", "packaging")
                 for path in (ROOT / top).rglob("*.py")
                 for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if pattern.search(line)]
    assert not offenders


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from the files git tracks, as a clean clone has them: setuptools
    reuses a checkout's build/lib, where an older layout's files would linger."""
    source = tmp_path_factory.mktemp("source")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        if name.startswith(("models/", "desktop/")) or name in ("pyproject.toml", "README.md"):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=600, cwd=source)
    assert done.returncode == 0, done.stderr
    return next(out.glob("stagewise-*.whl"))


def test_the_wheel_holds_stagewise_only(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"stagewise"}
    assert "stagewise/__init__.py" not in names  # a namespace: other stagewise.* may join
    for expected in ("stagewise/models/reasoning/search.py", "stagewise/desktop/cli/__init__.py",
                     "stagewise/models/data/catalogue.toml",
                     "stagewise/models/data/demo/stagewise-demo-Q8_0.gguf"):
        assert expected in names
    entry = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "stagewise = stagewise.desktop.cli:main" in entry


def test_the_installed_wheel_finds_its_data(wheel: Path, tmp_path: Path):
    """Installed as a user gets it, the core finds the demo pair and the catalogue."""
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    code = ("import stagewise.models.library.demo as d, stagewise.models.library.catalogue as c;"
            "import stagewise.desktop.cli;"
            "print(d.__file__); print(d.demo_pair() is not None); print(len(c.load_catalogue()))")
    site = sysconfig.get_paths()["purelib"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), site])}
    for name in ("STAGEWISE_DEMO_DIR", "STAGEWISE_CATALOGUE"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                          env=env, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    where, has_demo, entries = done.stdout.split()
    assert Path(where).is_relative_to(target)  # not the checkout
    assert has_demo == "True" and int(entries) > 0
