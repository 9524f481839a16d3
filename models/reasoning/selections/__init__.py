"""The selections: how a candidate is chosen, one module each, in one registry.

:data:`SELECTIONS` is the list the CLI's ``--select``, Preferences, ``stagewise eval``, the
hardware need, the run view and the exports read. A plug-in (or a test) adds one with
``SELECTIONS.register(MySelection())``.
"""

from __future__ import annotations

from stagewise.models.reasoning.registry import Registry
from stagewise.models.reasoning.selections.base import (
    Choosing,
    PairwiseSelection,
    Pick,
    PointwiseSelection,
    Selection,
    Verifier,
    best,
)
from stagewise.models.reasoning.selections.entropy import EntropySelection
from stagewise.models.reasoning.selections.judge import JudgeSelection
from stagewise.models.reasoning.selections.logprob import LogprobSelection
from stagewise.models.reasoning.selections.prm import PrmSelection
from stagewise.models.reasoning.selections.selfcheck import SelfcheckSelection
from stagewise.models.reasoning.selections.verdict import VerdictSelection
from stagewise.models.reasoning.selections.verifier_model import ModelSelection

__all__ = ["SELECTIONS", "Choosing", "PairwiseSelection", "Pick", "PointwiseSelection",
           "Selection", "Verifier", "best", "selection"]

SELECTIONS: Registry[Selection] = Registry("selection")
for _builtin in (JudgeSelection(), VerdictSelection(), SelfcheckSelection(), PrmSelection(),
                 EntropySelection(), LogprobSelection(), ModelSelection()):
    SELECTIONS.register(_builtin)


def selection(name: str) -> Selection:
    """The selection named ``name``.

    Raises:
        StagewiseError: There is none.
    """
    return SELECTIONS.get(name)
