"""The layers, as import-linter checks them (`lint-imports`, in the test command).

Contracts in pyproject.toml: Qt only under desktop/; the core never imports the front ends;
only the recipes import stagewise.models.recipes; runtime modules never import build-time
tooling (stagewise.models.build); inference sits below reasoning; the library never imports
the default-model choice; the core's packages form layers, each importing only those below it
(so no two packages import each other), with no import ignored.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")
CONTRACTS = 7


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT), "--config", str(tree / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def copy_tree(to: Path) -> Path:
    """models/ and desktop/ as the wheel installs them, stagewise/models and
    stagewise/desktop, first on PYTHONPATH."""
    ignore = shutil.ignore_patterns("__pycache__", "data", "*.gguf")
    for name in ("models", "desktop"):
        shutil.copytree(ROOT / name, to / "stagewise" / name, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", to / "pyproject.toml")
    return to


def test_the_contracts_hold():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Contracts: {CONTRACTS} kept, 0 broken." in done.stdout


@pytest.mark.parametrize(("module", "code", "broken"), [
    ("models/_probe.py", "import PySide6.QtCore\n", "Qt only under desktop/"),
    ("models/_probe.py", "import stagewise.desktop.cli.args\n",
     "The core never imports the front ends"),
    ("models/library/_probe.py", "import stagewise.models.recipes.llava_cot.converter\n",
     "Only the recipes themselves"),
    ("models/hardware/_probe.py", "import stagewise.models.build.tiny_vlm\n",
     "Runtime modules never import build-time tooling"),
    ("models/inference/_probe.py", "import stagewise.models.reasoning.search\n",
     "Inference sits below reasoning"),
    ("models/disk/_probe.py", "import stagewise.models.events\n",
     "The core's packages in layers"),
    ("models/library/_probe.py", "import stagewise.models.storage.history\n",
     "The core's packages in layers"),
])
def test_a_deliberate_violation_breaks_its_contract(tmp_path, module, code, broken):
    tree = copy_tree(tmp_path)
    (tree / "stagewise" / module).write_text(code)
    done = lint(tree)
    assert done.returncode != 0
    assert f"{broken}" in done.stdout and "BROKEN" in done.stdout
    # an upward import also breaks the layers; each probe breaks its own contract at least
    kept, failed = map(int, re.search(r"Contracts: (\d+) kept, (\d+) broken",
                                      done.stdout).groups())
    assert kept + failed == CONTRACTS and failed >= 1
