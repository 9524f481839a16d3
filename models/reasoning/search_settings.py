"""What a search run is asked to do; importable without loading llama.cpp."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from stagewise.models.bounds import IntRange
from stagewise.models.errors import StagewiseError
from stagewise.models.inference.sampling_settings import SamplingSettings
from stagewise.models.inference.stage_mode import StageMode

MAX_BEAM = 16  # past this, time and memory grow without a benefit the paper measured
BEAM = IntRange("beam", 1, MAX_BEAM, note="1 is a single pass")
"""Candidates per segment."""

MAX_STAGE_TOKENS = IntRange("max_stage_tokens", 1, 4096)
"""Token budget of one stage of one candidate."""

MAX_JUDGE_TOKENS = IntRange("max_judge_tokens", 1, 4096)
"""Token budget of one reply of the judge."""

SEED = IntRange("seed", 0, 2**32 - 1)
"""Seed of a run's random choices: an unsigned 32-bit number, as llama.cpp's samplers take."""


@dataclass(frozen=True)
class SearchSettings:
    """One run's search parameters.

    Attributes:
        strategy: The name of a strategy in
            :data:`~stagewise.models.reasoning.strategies.STRATEGIES`: "stage" (the paper's
            method; beam 1 is a plain single pass), "sentence" or "best-of-n" (the paper's
            baselines), "retrace" (the final paper's retracing search; its own sizes).
        beam: Candidates per segment (N), :data:`BEAM`.
        select: The name of a selection in
            :data:`~stagewise.models.reasoning.selections.SELECTIONS`: how a candidate is
            chosen; None: the default (:func:`~stagewise.models.reasoning.strategies.
            selection_name`).
        sampling: Candidate sampling (the paper: temperature 0.6, top_p 0.9).
        max_stage_tokens: Token budget per stage (per candidate), :data:`MAX_STAGE_TOKENS`;
            a whole answer gets four.
        max_judge_tokens: Token budget (:data:`MAX_JUDGE_TOKENS`) of one reply of the
            judge (its verdict, or the reference's reasoning check); a reply that names no
            response by then is read as the reference reads it (response 2). The
            reference allows 2048.
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

    def validate(self) -> None:
        """Checks every number against its range (:data:`BEAM`, :data:`MAX_STAGE_TOKENS`,
        :data:`SEED`, the sampling's own), that the strategy and the selection are
        registered (read when checked: a plug-in may register late), the judge's wording,
        and the stage mode's type.

        Raises:
            StagewiseError: A value is out of range or of the wrong type; the message names
                the setting and the allowed values.
        """
        # imported here: the registries' parts import these settings
        from stagewise.models.reasoning.judge import WORDINGS
        from stagewise.models.reasoning.selections import SELECTIONS
        from stagewise.models.reasoning.strategies import STRATEGIES

        for name, value, known, none_ok in (
                ("strategy", self.strategy, STRATEGIES.names(), False),
                ("select", self.select, SELECTIONS.names(), True),
                ("judge_prompt", self.judge_prompt, WORDINGS, False)):
            if value not in known and not (none_ok and value is None):
                default = " or None (the strategy's)" if none_ok else ""
                raise StagewiseError(
                    f"{name} must be one of {', '.join(known)}{default}, not {value!r}")
        for bound, value in ((BEAM, self.beam), (MAX_STAGE_TOKENS, self.max_stage_tokens),
                             (MAX_JUDGE_TOKENS, self.max_judge_tokens), (SEED, self.seed)):
            bound.check(value)
        self.sampling.validate()
        if self.mode is not None and not isinstance(self.mode, StageMode):
            raise StagewiseError(f"mode must be native, prompted or None, not {self.mode!r}")
        cutoff = self.retrace_cutoff  # -inf: never retrace (calibration's single pass)
        if cutoff is not None and (isinstance(cutoff, bool) or not isinstance(cutoff, int | float)
                                   or math.isnan(cutoff)):
            raise StagewiseError(f"retrace_cutoff must be a number or None, not {cutoff!r}")

