"""The model card of a built LLaVA-CoT model, and its registration in the model library.

The card travels with the files (``MODEL_CARD.md`` for people, ``card.json`` for tools) in
the library's folder for the ``llava-cot-local`` catalogue slot: the base and its
licence, the data and both of its licence statements, the training run, the recipe
version and the llama.cpp version that converted and quantized it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stagewise.models.disk.atomic import write_atomic
from stagewise.models.errors import StagewiseError
from stagewise.models.library.catalogue import LOCAL_FAMILY, find_entry, load_catalogue
from stagewise.models.library.installed import InstalledModel, Library
from stagewise.models.recipes.llava_cot.data import LICENCE_NOTICE

__all__ = ["DATASET", "RECIPE_VERSION", "SLOT_ID", "ModelCard", "register"]

RECIPE_VERSION = "1"
"""Bumped when a change to the recipe changes what it builds."""

SLOT_ID = "llava-cot-local"
"""The catalogue's slot for a model built on this machine."""

DATASET = "Xkev/LLaVA-CoT-100k"


@dataclass(frozen=True)
class ModelCard:
    """What a built model is.

    Attributes:
        base: The base's Hugging Face repository, or the local folder it came from.
        base_licence: The base's licence.
        data: The training data: the dataset and the data step's counts.
        training: Steps, samples per step, final loss, LoRA rank and so on.
        quant: The text model's quantization (the projector stays F16).
        llama_cpp: The llama-cpp-python version whose llama.cpp converted and quantized it.
        files: File name to SHA-256.
        recipe_version: :data:`RECIPE_VERSION` at build time.
        built: When (UTC, ISO 8601).
    """

    base: str
    base_licence: str
    data: dict[str, Any]
    training: dict[str, Any]
    quant: str
    llama_cpp: str
    files: dict[str, str] = field(default_factory=dict)
    recipe_version: str = RECIPE_VERSION
    built: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def markdown(self) -> str:
        t, d = self.training, self.data
        lines = [
            "# LLaVA-CoT (built on this machine)", "",
            "A vision-language model fine-tuned to answer in four stages (summary, caption,",
            "reasoning, conclusion), after LLaVA-CoT (arXiv 2411.10440). Stagewise loads it",
            "in native stage mode: it gets the question alone and writes the stage tags itself.",
            "", "| | |", "|---|---|",
            f"| base | {self.base} |",
            f"| base licence | {self.base_licence} |",
            f"| data | {d.get('dataset', DATASET)} (LLaVA-CoT-100k format): "
            f"{d.get('train', '?')} training samples, {d.get('val', '?')} held out |",
            f"| training | LoRA rank {t.get('rank')}, {t.get('steps')} steps of "
            f"{t.get('accumulate')} samples, lr {t.get('lr')}, final loss "
            f"{t.get('final_loss', float('nan')):.3f} |",
            f"| quantization | {self.quant} text model, F16 projector |",
            f"| converted by | llama.cpp of llama-cpp-python {self.llama_cpp} |",
            f"| recipe | models/recipes/llava_cot, version {self.recipe_version} |",
            f"| built | {self.built} |", "",
            "## Data licence", "", LICENCE_NOTICE, "",
            "## Files", "", *(f"- `{name}`: SHA-256 `{digest}`"
                              for name, digest in self.files.items()), "",
        ]
        return "\n".join(lines)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def register(model: Path, mmproj: Path, card: ModelCard, *,
             library: Library | None = None) -> InstalledModel:
    """Copy the pair into the library's ``llava-cot-local`` folder, write the card, record it.

    A model built before is replaced (its files too).

    Args:
        model: The quantized text model.
        mmproj: The projector.
        card: The card; its ``files`` are filled in here.
        library: The model library (default: the user's).

    Returns:
        The library's record.

    Raises:
        StagewiseError: The files are not a loadable pair, or cannot be copied.
    """
    library = library or Library()
    entry = find_entry(SLOT_ID, load_catalogue())
    assert entry.family == LOCAL_FAMILY
    home = library.folder / entry.id
    home.mkdir(parents=True, exist_ok=True)
    names = {model: f"{entry.id}-{card.quant}.gguf", mmproj: f"mmproj-{entry.id}-f16.gguf"}
    placed = []
    for source, name in names.items():
        partial = home / f".{name}.partial"
        try:
            shutil.copyfile(source, partial)
            partial.replace(home / name)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise StagewiseError(f"could not copy {source.name} into {home}: "
                                 f"{error.strerror or error}") from error
        placed.append(home / name)
    for stale in home.glob(f"{entry.id}-*.gguf"):
        if stale not in placed:
            stale.unlink()
    card = ModelCard(**{**asdict(card), "files": {p.name: sha256(p) for p in placed}})
    write_atomic(home / "MODEL_CARD.md", card.markdown().encode())
    write_atomic(home / "card.json", (json.dumps(asdict(card), indent=2) + "\n").encode())
    return library.add_built(entry, placed[0], placed[1])
