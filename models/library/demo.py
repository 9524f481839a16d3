"""The demo model that ships inside the package, and its held-out test split.

The demo is a tiny LLaVA-CoT trained on synthetic visual puzzles
(:mod:`stagewise.models.build.puzzles`) by the recipe in :mod:`stagewise.models.recipes.demo`. It
lives in ``models/data/demo/``:

- ``stagewise-demo-Q8_0.gguf`` and ``mmproj-stagewise-demo-f16.gguf``: the pair;
- ``test/test.jsonl`` and ``test/images/``: the held-out puzzles it was never trained on,
  in LLaVA-CoT-100k format, for ``stagewise eval --demo``;
- ``val/val.jsonl`` and ``val/images/``: the first puzzles of its validation split, on
  which ``stagewise eval --demo`` calibrates retrace's cutoff;
- ``stagewise-demo-verifier-Q8_0.gguf`` and ``mmproj-stagewise-demo-verifier-f16.gguf``:
  its process reward model (the ``prm`` selection's second model), trained by
  :mod:`stagewise.models.recipes.demo.verifier`.

``STAGEWISE_DEMO_DIR`` points elsewhere (tests use it for a folder of their own).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEMO_MODEL = "stagewise-demo-Q8_0.gguf"
DEMO_MMPROJ = "mmproj-stagewise-demo-f16.gguf"
DEMO_TEST = Path("test") / "test.jsonl"
DEMO_VALIDATION = Path("val") / "val.jsonl"
DEMO_VALIDATION_SIZE = 20
DEMO_VERIFIER = "stagewise-demo-verifier-Q8_0.gguf"
DEMO_VERIFIER_MMPROJ = "mmproj-stagewise-demo-verifier-f16.gguf"
DEMO_VERIFIER_PARITY = "parity-verifier.json"


@dataclass(frozen=True)
class DemoPair:
    model: Path
    mmproj: Path


def demo_dir() -> Path:
    """Where the demo files are: ``STAGEWISE_DEMO_DIR`` or the package's own copy."""
    override = os.environ.get("STAGEWISE_DEMO_DIR")
    return Path(override) if override else Path(__file__).parents[1] / "data" / "demo"


def demo_pair() -> DemoPair | None:
    """The shipped model pair, or None when this install has none."""
    folder = demo_dir()
    pair = DemoPair(folder / DEMO_MODEL, folder / DEMO_MMPROJ)
    return pair if pair.model.is_file() and pair.mmproj.is_file() else None


def example_image() -> Path:
    """The built-in example picture (a shape puzzle) that self-tests and smoke answers use."""
    return Path(__file__).parents[1] / "data" / "example.png"


def demo_validation_split() -> Path | None:
    """The shipped validation puzzles (a ``val.jsonl``), or None when this install has none."""
    path = demo_dir() / DEMO_VALIDATION
    return path if path.is_file() else None


def demo_test_split() -> Path | None:
    """The held-out test split (a ``test.jsonl``), or None when this install has none."""
    path = demo_dir() / DEMO_TEST
    return path if path.is_file() else None


def demo_verifier() -> DemoPair | None:
    """The shipped process reward model beside the demo pair, or None."""
    folder = demo_dir()
    pair = DemoPair(folder / DEMO_VERIFIER, folder / DEMO_VERIFIER_MMPROJ)
    return pair if pair.model.is_file() and pair.mmproj.is_file() else None
