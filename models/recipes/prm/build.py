"""A PRM's Hugging Face folder to a GGUF pair in the model library.

Steps, each told to ``log``:

1. :func:`~stagewise.models.recipes.prm.checks.check_folder`: the folder holds the weights
   the catalogue entry names, in an architecture llama.cpp converts.
2. The text model (F16) and the projector (F16), with the LLaVA-CoT recipe's converter (the
   one of the llama.cpp the installed llama-cpp-python runs), the entry's own system message
   written as :data:`~stagewise.models.reasoning.prm_verifier.SYSTEM_KEY` where it has one.
3. The text model quantized (:func:`stagewise.models.build.quantize.quantize`; Q8_0 unless
   asked otherwise, F16 kept as is); the projector stays F16.
4. :func:`~stagewise.models.recipes.prm.checks.answer_tokens`: "+" and "-" are single tokens.
5. Both files moved into the library's folder for the entry (replacing an earlier build) and
   recorded there, with ``card.json`` saying what was built from what.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from stagewise.models.disk.atomic import write_atomic
from stagewise.models.errors import StagewiseError
from stagewise.models.library.catalogue import CatalogueEntry, find_entry, load_catalogue
from stagewise.models.library.installed import InstalledModel, Library
from stagewise.models.recipes.prm.checks import answer_tokens, check_folder

__all__ = ["DEFAULT_QUANT", "QUANTS", "PrmCard", "build_prm", "prm_entry"]

QUANTS = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "F16")
"""The text model's quantizations offered."""

DEFAULT_QUANT = "Q8_0"
"""A PRM's score is the difference of two logits: Q8_0, the closest to F16 of the
quantizations, unless asked otherwise (not measured against F16 on real weights here)."""


@dataclass(frozen=True)
class PrmCard:
    """What a built PRM is, kept as ``card.json`` beside its files.

    Attributes:
        id: The catalogue id.
        weights: The published weights' repository.
        folder: The Hugging Face folder converted.
        architecture: Its architecture, and an InternVL model's language model after "/".
        quant: The text model's quantization.
        system_prompt: "" when the ``prm`` selection's default (VL-PRM's) applies, else the
            system message written into the GGUF.
        answer_ids: The token ids of "+" and "-".
        llama_cpp: The llama-cpp-python version whose llama.cpp converted it.
        built: When (UTC, ISO 8601).
    """

    id: str
    weights: str
    folder: str
    architecture: str
    quant: str
    system_prompt: str
    answer_ids: tuple[int, int]
    llama_cpp: str
    built: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def prm_entry(entry_id: str) -> CatalogueEntry:
    """The catalogue's process reward model ``entry_id``.

    Raises:
        StagewiseError: No entry has that id, or it is a model that answers.
    """
    catalogue = load_catalogue()
    entry = find_entry(entry_id, catalogue)
    if not entry.verifier:
        known = ", ".join(e.id for e in catalogue if e.verifier)
        raise StagewiseError(f"{entry_id} is a model that answers, not a process reward "
                             f"model; the catalogue's PRMs: {known}")
    return entry


def build_prm(folder: Path, entry: CatalogueEntry, *, work: Path, source: Path,
              quant: str = DEFAULT_QUANT, keep_f16: bool = False,
              library: Library | None = None,
              log: Callable[[str], None] = print) -> InstalledModel:
    """Convert, quantize, check and register a PRM (see the module docstring).

    Args:
        folder: The downloaded Hugging Face folder of ``entry.weights``.
        entry: The catalogue's ``[[prm]]`` entry (:func:`prm_entry`).
        work: Where the F16 files are written (created).
        source: llama.cpp's converter folder
            (:func:`~stagewise.models.recipes.llava_cot.converter.converter_source`).
        quant: One of :data:`QUANTS`.
        keep_f16: Keep the F16 text model in ``work`` (it is deleted once quantized).
        library: The model library; the user's when None.
        log: Called with each line of progress (the converter's too, less its tensors).

    Returns:
        The library's record, under ``entry.id``.

    Raises:
        StagewiseError: The folder is not the entry's weights, conversion or quantization
            failed, "+" or "-" is not a single token, or the files cannot be placed.
    """
    from stagewise.models.build.quantize import quantize
    from stagewise.models.inference.llama_runtime import init_backend
    from stagewise.models.reasoning.prm_verifier import SYSTEM_KEY
    from stagewise.models.recipes.llava_cot.converter import convert, llama_cpp_version

    if quant not in QUANTS:
        raise StagewiseError(f"unknown quantization {quant!r}; one of {', '.join(QUANTS)}")
    folder, work = Path(folder), Path(work)
    facts = check_folder(folder, entry)
    what = facts.architecture + (f"/{facts.language_model}" if facts.language_model else "")
    log(f"{folder}: {what}, the weights of {entry.weights}")
    if facts.system_message and entry.system_prompt \
            and facts.system_message.strip() != entry.system_prompt.strip():
        log("note: its config.json names another system_message; the one its training used "
            "(the catalogue's) is written")
    metadata = {SYSTEM_KEY: entry.system_prompt} if entry.system_prompt else {}
    text_f16 = work / f"{entry.id}-F16.gguf"
    mmproj = work / f"mmproj-{entry.id}-f16.gguf"
    convert(folder, text_f16, source=source, metadata=metadata, log=_quiet(log))
    convert(folder, mmproj, source=source, mmproj=True, log=_quiet(log))
    log(f"converted: {text_f16.name}, {mmproj.name}")
    if quant == "F16":
        model = text_f16
    else:
        log(f"quantizing the text model to {quant}")
        init_backend()  # llama.cpp's lines per tensor go to the log, not to the terminal
        model = quantize(text_f16, work / f"{entry.id}-{quant}.gguf", quant)
    good, bad = answer_tokens(model)
    log(f"answers: '+' is token {good}, '-' is token {bad}, one token each")
    card = PrmCard(entry.id, entry.weights or "", str(folder.resolve()), what, quant,
                   entry.system_prompt, (good, bad), llama_cpp_version())
    installed = _register(entry, model, mmproj, card, library or Library(), keep=keep_f16
                          and model == text_f16)
    if model != text_f16 and not keep_f16:
        text_f16.unlink(missing_ok=True)
    log(f"registered as {installed.id!r}: {installed.model}")
    return installed


def _quiet(log: Callable[[str], None]) -> Callable[[str], None]:
    """The converter's output, less its line per tensor (hundreds for a real model)."""
    return lambda line: None if "shape = {" in line else log(line)


def _register(entry: CatalogueEntry, model: Path, mmproj: Path, card: PrmCard,
              library: Library, *, keep: bool) -> InstalledModel:
    """Put the pair into the library's folder for ``entry`` (replacing an earlier build of
    another quantization too), write the card and record it; ``keep`` copies the text model
    instead of moving it."""
    home = library.folder / entry.id
    home.mkdir(parents=True, exist_ok=True)
    placed = []
    for path, name in ((model, f"{entry.id}-{card.quant}.gguf"),
                       (mmproj, f"mmproj-{entry.id}-f16.gguf")):
        partial = home / f".{name}.partial"
        try:
            if keep and path == model:
                shutil.copyfile(path, partial)
            else:
                shutil.move(path, partial)
            os.replace(partial, home / name)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise StagewiseError(f"could not put {path.name} into {home}: "
                                 f"{error.strerror or error}") from error
        placed.append(home / name)
    for stale in home.glob(f"{entry.id}-*.gguf"):
        if stale not in placed:
            stale.unlink()
    write_atomic(home / "card.json", (json.dumps(asdict(card), indent=2) + "\n").encode())
    return library.add_built(entry, placed[0], placed[1])
