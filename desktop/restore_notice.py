"""What restoring a past run changed in the search the next question is asked with.

Restoring a run puts back the search it was asked with (beam, selection, strategy,
sampling, tokens per stage), so that asking again asks the same way. :func:`restored_changes`
lists what that changed, in the words Preferences uses, for the line the window shows
("Restored from the run: Beam 4 (was auto)…"): the person sees it instead of finding out later.
"""

from __future__ import annotations

from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.reasoning.selections import SELECTIONS
from stagewise.models.reasoning.strategies import STRATEGIES

__all__ = ["restored_changes", "restored_text"]


def _selection(name: str | None) -> str:
    found = SELECTIONS.find(name) if name else None
    return found.label if found is not None else "automatic"


def _strategy(name: str) -> str:
    found = STRATEGIES.find(name)
    return found.label if found is not None else name


def restored_changes(before: SearchSettings, auto_before: bool,
                     after: SearchSettings) -> list[str]:
    """What differs between the search before a restore and the restored one.

    Args:
        before: The search the window would have asked with.
        auto_before: Whether the beam was "auto" before (a restore always sets a width).
        after: The run's own search, now the window's.

    Returns:
        One short phrase a change ("Beam 4 (was auto)"), in Preferences' order; empty when
        nothing changed.
    """
    was_beam = "auto" if auto_before else str(before.beam)
    pairs = [
        ("Beam", was_beam, str(after.beam)),
        ("Selection", _selection(before.select), _selection(after.select)),
        ("Strategy", _strategy(before.strategy), _strategy(after.strategy)),
        ("Temperature", f"{before.sampling.temperature:g}", f"{after.sampling.temperature:g}"),
        ("Top-p", f"{before.sampling.top_p:g}", f"{after.sampling.top_p:g}"),
        ("Tokens per stage", str(before.max_stage_tokens), str(after.max_stage_tokens)),
    ]
    return [f"{name} {new} (was {old})" for name, old, new in pairs if old != new]


def restored_text(changes: list[str]) -> str:
    """The window's line for :func:`restored_changes` ("" when nothing changed)."""
    if not changes:
        return ""
    return ("Set from the restored question, to ask again as it was asked: "
            + "; ".join(changes) + ". Preferences changes them back.")
