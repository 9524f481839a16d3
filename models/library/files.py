"""Model files on disk: finding a model's projector beside it."""

from __future__ import annotations

import re
from pathlib import Path

# a file name's precision or quantization tag: "f16", "Q8_0", "q4_k_m", "bf16", "IQ4_XS"
_TAG = re.compile(r"[-_.](?:[fb]f?\d+|i?q\d+(?:_[a-z0-9]+)*)$", re.IGNORECASE)


def find_mmproj(model: Path) -> Path | None:
    """The projector lying beside ``model`` (a GGUF with "mmproj" in its name).

    With one such file, that one. With several (a folder holding two pairs, such as the demo
    model and its verifier), the one whose name is the model's own without its precision or
    quantization tag ("mmproj-stagewise-demo-f16.gguf" for "stagewise-demo-Q8_0.gguf"), if
    exactly one is; else None.
    """
    found = [p for p in model.parent.glob("*.gguf") if "mmproj" in p.name.lower() and p != model]
    if len(found) <= 1:
        return found[0] if found else None
    named = [p for p in found if _base(p.stem.lower().replace("mmproj", "")) == _base(
        model.stem.lower())]
    return named[0] if len(named) == 1 else None


def _base(stem: str) -> str:
    """A file name's stem without its tag and the separators at its ends."""
    stem = stem.strip("-_.")
    return _TAG.sub("", stem).strip("-_.")
