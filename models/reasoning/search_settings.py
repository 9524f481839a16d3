"""What a search run is asked to do; importable without loading llama.cpp."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from stagewise.models.inference.sampling_settings import SamplingSettings
from stagewise.models.inference.stage_mode import StageMode

Strategy = Literal["stage", "sentence", "best-of-n", "retrace"]
Selection = Literal["judge", "logprob"]
STRATEGIES: tuple[Strategy, ...] = ("stage", "sentence", "best-of-n", "retrace")
RETRACE_SCORERS: tuple[str, ...] = ("selfcheck", "logprob", "model")
SELECTIONS: tuple[Selection, ...] = ("judge", "logprob")


@dataclass(frozen=True)
class SearchSettings:
    """One run's search parameters.

    Attributes:
        strategy: "stage" (the paper's method; beam 1 is a plain single pass), "sentence"
            or "best-of-n" (the paper's baselines), or "retrace" (the final paper's
            stage-wise retracing search, :mod:`stagewise.models.reasoning.retrace`; its sizes are
            the paper's, the beam width and selection do not apply).
        beam: Candidates per segment (N).
        select: "judge" (the model judges pairs) or "logprob" (mean token log-probability).
        sampling: Candidate sampling (the paper: temperature 0.6, top_p 0.9).
        max_stage_tokens: Token budget per stage (per candidate); a whole answer gets four.
        max_judge_tokens: Token budget for one judge's reason before it must pick.
        seed: Every random choice derives from it: a run is reproducible from its seed.
        mode: Native or prompted stages; None takes the model's declared mode.
        check_reasoning: Run the text-only correctness check before judging reasoning.
        retrace_scorer: What scores retrace's candidates: "selfcheck", "logprob" or
            "model" (a second GGUF vision model, ``scorer_model``).
        retrace_cutoff: Retrace while the second-best reasoning score is not above it;
            None: the scorer's default (:func:`stagewise.models.reasoning.retrace.default_cutoff`).
        scorer_model: The second model's text GGUF (its projector beside it), or a
            library id, for the "model" scorer.
    """

    strategy: Strategy = "stage"
    beam: int = 1
    select: Selection = "judge"
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    max_stage_tokens: int = 256
    max_judge_tokens: int = 32
    seed: int = 0
    mode: StageMode | None = None
    check_reasoning: bool = True
    retrace_scorer: str = "selfcheck"
    retrace_cutoff: float | None = None
    scorer_model: Path | None = None


MAX_BEAM = 16  # past this, time and memory grow without a benefit the paper measured


RETRACE_SEQUENCES = 7
"""Sequences a retrace keeps alive at most: the summary, a branch, four candidates, a spare."""


def sequences_needed(beam: int, strategy: str = "stage") -> int:
    """Sequences a search of this beam width keeps alive at most (root, candidates, checks)."""
    needed = 2 * beam + 1
    return max(needed, RETRACE_SEQUENCES) if strategy == "retrace" else needed
