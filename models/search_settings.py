"""What a search run is asked to do; importable without loading llama.cpp."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from models.sampling_settings import SamplingSettings
from models.stages import StageMode

Strategy = Literal["stage", "sentence", "best-of-n"]
Selection = Literal["judge", "logprob"]
STRATEGIES: tuple[Strategy, ...] = ("stage", "sentence", "best-of-n")
SELECTIONS: tuple[Selection, ...] = ("judge", "logprob")


@dataclass(frozen=True)
class SearchSettings:
    """One run's search parameters.

    Attributes:
        strategy: "stage" (the paper's method; beam 1 is a plain single pass), "sentence"
            or "best-of-n" (the paper's baselines).
        beam: Candidates per segment (N).
        select: "judge" (the model judges pairs) or "logprob" (mean token log-probability).
        sampling: Candidate sampling (the paper: temperature 0.6, top_p 0.9).
        max_stage_tokens: Token budget per stage (per candidate); a whole answer gets four.
        max_judge_tokens: Token budget for one judge's reason before it must pick.
        seed: Every random choice derives from it: a run is reproducible from its seed.
        mode: Native or prompted stages; None takes the model's declared mode.
        check_reasoning: Run the text-only correctness check before judging reasoning.
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


MAX_BEAM = 16  # past this, time and memory grow without a benefit the paper measured


def sequences_needed(beam: int) -> int:
    """Sequences a search of this beam width keeps alive at most (root, candidates, checks)."""
    return 2 * beam + 1
