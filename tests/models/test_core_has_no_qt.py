"""The core must work where Qt is not installed: every models module imports without it."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import textwrap

import models


def test_every_core_module_imports_with_qt_unavailable():
    names = sorted(f"models.{m.name}" for m in pkgutil.iter_modules(models.__path__))
    assert "models.search" in names and "models.history" in names
    script = textwrap.dedent(f"""
        import importlib, sys
        class NoQt:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("PySide6", "shiboken6", "PyQt5", "PyQt6"):
                    raise ImportError(f"{{name}} is blocked: the core must not import Qt")
        sys.meta_path.insert(0, NoQt())
        for name in {names!r}:
            importlib.import_module(name)
        print("imported", len({names!r}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"imported {len(names)}" in done.stdout
