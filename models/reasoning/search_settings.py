"""What a search run is asked to do; importable without loading llama.cpp."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stagewise.models.inference.sampling_settings import SamplingSettings
from stagewise.models.inference.stage_mode import StageMode


@dataclass(frozen=True)
class SearchSettings:
    """One run's search parameters.

    Attributes:
        strategy: The name of a strategy in
            :data:`~stagewise.models.reasoning.strategies.STRATEGIES`: "stage" (the paper's
            method; beam 1 is a plain single pass), "sentence" or "best-of-n" (the paper's
            baselines), "retrace" (the final paper's retracing search; its own sizes).
        beam: Candidates per segment (N).
        select: The name of a selection in
            :data:`~stagewise.models.reasoning.selections.SELECTIONS`: how a candidate is
            chosen; None: the default (:func:`~stagewise.models.reasoning.strategies.
            selection_name`).
        sampling: Candidate sampling (the paper: temperature 0.6, top_p 0.9).
        max_stage_tokens: Token budget per stage (per candidate); a whole answer gets four.
        max_judge_tokens: Token budget of one reply of the judge (its verdict, or the
            reference's reasoning check); a reply that names no response by then is read
            as the reference reads it (response 2). The reference allows 2048.
        judge_prompt: The judge's wording: "short" (this project's) or "reference" (the
            LLaVA-CoT reference's, :mod:`stagewise.models.reasoning.judge`).
        seed: Every random choice derives from it: a run is reproducible from its seed.
        mode: Native or prompted stages; None takes the model's declared mode.
        check_reasoning: Run the text-only correctness check before judging reasoning.
        retrace_cutoff: Retrace while the second-best reasoning score is not above it;
            None: the selection's default cutoff.
        scorer_model: The second model's text GGUF (its projector beside it), or a
            library id, for a selection that scores with one.
    """

    strategy: str = "stage"
    beam: int = 1
    select: str | None = None
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    max_stage_tokens: int = 256
    max_judge_tokens: int = 128
    seed: int = 0
    judge_prompt: str = "short"
    mode: StageMode | None = None
    check_reasoning: bool = True
    retrace_cutoff: float | None = None
    scorer_model: Path | None = None


MAX_BEAM = 16  # past this, time and memory grow without a benefit the paper measured

