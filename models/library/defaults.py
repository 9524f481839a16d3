"""The model used when the user names none.

That is the demo model shipped in the package (:mod:`stagewise.models.library.demo`): a tiny
LLaVA-CoT trained on synthetic shape puzzles, which answers questions about such pictures. An
install without it (a source checkout whose demo files were removed) has no built-in
model and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stagewise.models.errors import StagewiseError
from stagewise.models.library.demo import demo_pair
from stagewise.models.library.files import find_mmproj


@dataclass(frozen=True)
class DefaultModel:
    model: Path
    mmproj: Path
    note: str


DEMO_NOTE = ("no model given: using the built-in demo model, which knows only pictures of "
             "coloured circles, squares and triangles; pass --model to use a real one")


def default_model() -> DefaultModel:
    """The shipped demo pair.

    Raises:
        StagewiseError: This install has no demo files.
    """
    demo = demo_pair()
    if demo is None:
        raise StagewiseError(
            "this install has no built-in model (the demo files in models/data/demo/ are "
            "missing): pass --model and --mmproj, or pull one with `stagewise models pull`")
    return DefaultModel(demo.model, demo.mmproj, DEMO_NOTE)


def resolve_pair(model: Path | None, mmproj: Path | None) -> DefaultModel:
    """The files to load for a user's choice: the built-in pair when no model is named, an
    installed model when ``model`` is a library id ("qwen2.5-vl-3b-q4"), else the model file
    with its named projector or the one beside it.

    Raises:
        StagewiseError: A model is named, no projector is, and none lies beside it.
    """
    if model is None:
        fallback = default_model()
        return DefaultModel(fallback.model, mmproj or fallback.mmproj, fallback.note)
    if _is_library_id(model):
        from stagewise.models.library.installed import (
            Library,  # it loads huggingface_hub: only when needed
        )

        installed = Library().get(str(model))
        return DefaultModel(installed.model, mmproj or installed.mmproj, "")
    found = mmproj or find_mmproj(model)
    if found is None:
        raise StagewiseError(f"{model}: no projector chosen and none found beside it")
    return DefaultModel(model, found, "")


def _is_library_id(model: Path) -> bool:
    """A bare name that is no file here and no GGUF path: a model library id."""
    return len(model.parts) == 1 and model.suffix != ".gguf" and not model.exists()
