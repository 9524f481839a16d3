"""The model used when the user names none.

That is the demo model shipped in the package (:mod:`models.demo`): a tiny LLaVA-CoT
trained on synthetic shape puzzles, which answers questions about such pictures. An
install without it (a source checkout whose demo files were removed) falls back to the
tiny random-weight pair from :mod:`models.tiny_vlm`, written once into the data folder:
its answers are noise, but it exercises the whole path offline.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from models.demo import demo_pair
from models.errors import StagewiseError
from models.paths import data_dir
from models.tiny_vlm import TINY, write_tiny_pair


@dataclass(frozen=True)
class DefaultModel:
    model: Path
    mmproj: Path
    note: str


DEMO_NOTE = ("no model given: using the built-in demo model, which knows only pictures of "
             "coloured circles, squares and triangles; pass --model to use a real one")


def default_model() -> DefaultModel:
    """The shipped demo pair, or else the random pair (built on first use, under a second)."""
    demo = demo_pair()
    if demo is not None:
        return DefaultModel(demo.model, demo.mmproj, DEMO_NOTE)
    folder = data_dir() / "models" / "tiny-random"
    folder.parent.mkdir(parents=True, exist_ok=True)
    model, mmproj = folder / "tiny-model.gguf", folder / "tiny-mmproj.gguf"
    if not (model.is_file() and mmproj.is_file()):
        # write beside, then rename: a crash never leaves a half-written default model
        staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=folder.parent))
        pair = write_tiny_pair(staging, TINY)
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(pair.mmproj, mmproj)
        os.replace(pair.model, model)
        shutil.rmtree(staging, ignore_errors=True)
    return DefaultModel(
        model, mmproj,
        "no model given: using the built-in tiny random-weight model, whose answers are "
        "noise; pass --model and --mmproj to use a real one",
    )


def find_mmproj(model: Path) -> Path | None:
    """A projector lying beside ``model`` (a GGUF with "mmproj" in its name), if exactly one."""
    found = [p for p in model.parent.glob("*.gguf") if "mmproj" in p.name.lower() and p != model]
    return found[0] if len(found) == 1 else None


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
        from models.library import Library  # the library imports this module

        installed = Library().get(str(model))
        return DefaultModel(installed.model, mmproj or installed.mmproj, "")
    found = mmproj or find_mmproj(model)
    if found is None:
        raise StagewiseError(f"{model}: no projector chosen and none found beside it")
    return DefaultModel(model, found, "")


def _is_library_id(model: Path) -> bool:
    """A bare name that is no file here and no GGUF path: a model library id."""
    return len(model.parts) == 1 and model.suffix != ".gguf" and not model.exists()
