"""The core must work where Qt is not installed: every runtime module imports without it.

The walk is recursive over stagewise.models, leaving out only the recipes and the build
tooling, whose heavy extras (torch, transformers) are not the runtime's.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import textwrap

import stagewise.models as core

LEFT_OUT = ("stagewise.models.recipes", "stagewise.models.build")


def runtime_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(core.__path__, "stagewise.models.")
             if not m.name.startswith(LEFT_OUT)]
    return sorted(["stagewise.models", *names])


def test_the_walk_reaches_every_runtime_package():
    names = runtime_modules()
    for expected in ("stagewise.models.reasoning.search", "stagewise.models.storage.history.store",
                     "stagewise.models.inference.families.qwen", "stagewise.models.hardware.fit",
                     "stagewise.models.evaluation.vlmevalkit", "stagewise.models.session"):
        assert expected in names
    assert not any(name.startswith(LEFT_OUT) for name in names)


def test_every_core_module_imports_with_qt_unavailable():
    names = runtime_modules()
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
