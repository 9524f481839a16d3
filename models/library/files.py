"""Model files on disk: finding a model's projector beside it."""

from __future__ import annotations

from pathlib import Path


def find_mmproj(model: Path) -> Path | None:
    """A projector lying beside ``model`` (a GGUF with "mmproj" in its name), if exactly one."""
    found = [p for p in model.parent.glob("*.gguf") if "mmproj" in p.name.lower() and p != model]
    return found[0] if len(found) == 1 else None
