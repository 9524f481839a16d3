"""Which catalogue model to suggest first on this machine.

A first run has only the built-in demo model; the window then suggests one download.
:func:`recommend` picks it from the catalogue with the same memory test the model manager
marks "fits" with (:func:`~stagewise.models.library.installed.rough_fit`): the largest
downloadable model that answers (never a process reward model, which only scores
another model's steps) whose files fit this machine's free memory, preferring a model that
answers directly over a thinking one (a thinking block makes each stage far longer), and
on a machine without a GPU one of at most :data:`CPU_PARAMS_LIMIT` parameters (a larger
one fits in RAM but answers too slowly there). Qt-free.
"""

from __future__ import annotations

import re

from stagewise.models.hardware import Hardware
from stagewise.models.library.catalogue import CatalogueEntry
from stagewise.models.library.installed import rough_fit

__all__ = ["CPU_PARAMS_LIMIT", "params_billions", "recommend"]

CPU_PARAMS_LIMIT = 4.0
"""Billions of parameters above which a model is not suggested for a CPU-only machine."""

_PARAMS_RE = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[BbMm])\s*$")


def params_billions(params: str) -> float | None:
    """``"2.2B"`` → 2.2, ``"500M"`` → 0.5; None when the count is not given that way."""
    match = _PARAMS_RE.match(params)
    if match is None:
        return None
    n = float(match.group("n"))
    return n if match.group("unit") in "Bb" else n / 1000


def recommend(catalogue: tuple[CatalogueEntry, ...],
              hardware: Hardware) -> CatalogueEntry | None:
    """The catalogue entry to suggest as this machine's first real model.

    Args:
        catalogue: The entries to choose from.
        hardware: This machine (:func:`~stagewise.models.hardware.detect_hardware`).

    Returns:
        The largest downloadable entry of known size that fits, non-thinking models
        first and, without a GPU, none above :data:`CPU_PARAMS_LIMIT` unless nothing
        else fits; ties go to the earlier entry. None when nothing fits.
    """
    fitting = [entry for entry in catalogue  # a verifier (a PRM) answers nothing
               if not entry.local and not entry.verifier
               and rough_fit(entry.total_bytes, hardware)]
    if not fitting:
        return None
    gpu = hardware.gpu_offload and bool(hardware.gpus)

    def preference(entry: CatalogueEntry) -> tuple[bool, bool, int]:
        billions = params_billions(entry.params)
        light = gpu or (billions is not None and billions <= CPU_PARAMS_LIMIT)
        return light, not entry.thinking, entry.total_bytes

    return max(fitting, key=preference)  # max keeps the first of equals
