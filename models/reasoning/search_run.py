"""What one run of a search has chosen and spent so far; it becomes the run's result."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from stagewise.models.events import (
    Candidate,
    Check,
    RunWarning,
    SearchResult,
    Timings,
    Verdict,
)
from stagewise.models.reasoning.search_backend import BackendStats, Sampled
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.stages import STAGES, Stage, parse_answer

__all__ = ["RunRecord"]


@dataclass
class RunRecord:
    """The state of one question's search.

    Attributes:
        question: The question, as asked.
        answer: The chosen text so far, tags included.
        answer_tokens: Tokens the chosen segments hold.
        open_stage_tokens: Tokens the chosen text has written in the stage now open.
        ended: The chosen text ended the assistant's turn.
        segment: The number of the next segment.
        unit: The unit of the segment being sampled (for a cancel's partial candidates).
    """

    question: str
    stats0: BackendStats
    start: float = field(default_factory=time.perf_counter)
    answer: str = ""
    answer_tokens: int = 0
    open_stage_tokens: int = 0
    ended: bool = False
    segment: int = 0
    unit: Stage | None = None
    candidates: list[Candidate] = field(default_factory=list)
    chosen: list[tuple[int, int]] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    stage_s: dict[str, float] = field(default_factory=dict)
    prompt_s: float = 0.0
    judge_s: float = 0.0
    generated: int = 0
    earlier_turns: int = 0
    dropped_turns: int = 0
    image_tokens: int = 0
    image_size: tuple[int, int] = (0, 0)
    warnings: list[RunWarning] = field(default_factory=list)

    def chosen_so_far(self) -> tuple[str, int, bool]:
        """The chosen text, the tokens it holds, and whether it ended the turn."""
        return self.answer, self.answer_tokens, self.ended

    def add_candidates(self, unit: Stage | None, sampled: list[Sampled],
                       counted: bool = True) -> list[Candidate]:
        """Record sampled candidates of the current segment; ``counted`` adds their tokens
        to the generated total (a cancel's partial candidates are not counted)."""
        candidates = [candidate(unit, self.segment, s) for s in sampled]
        self.candidates += candidates
        if counted:
            self.generated += sum(s.n_sampled for s in sampled)
        return candidates

    def set_scores(self, segment: int, scores: tuple[float, ...]) -> None:
        """Give the candidates of ``segment`` the scores their selection gave them."""
        self.candidates = [
            replace(c, score=scores[c.index])
            if c.segment == segment and c.index < len(scores) else c
            for c in self.candidates]

    def add_time(self, unit: Stage | None, seconds: float) -> None:
        key = unit.value if unit else "answer"
        self.stage_s[key] = self.stage_s.get(key, 0.0) + seconds

    def result(self, settings: SearchSettings, mode: str, status: str,
               stats: BackendStats) -> SearchResult:
        """The run's result, its timings measured now."""
        timings = Timings(
            total_s=time.perf_counter() - self.start,
            prompt_s=self.prompt_s,
            judge_s=self.judge_s,
            stage_s=dict(self.stage_s),
            image_encodes=stats.image_encodes - self.stats0.image_encodes,
            prompt_tokens=stats.prompt_tokens - self.stats0.prompt_tokens,
            generated_tokens=self.generated,
            decode_steps=stats.decode_steps - self.stats0.decode_steps,
            earlier_turns=self.earlier_turns,
            dropped_turns=self.dropped_turns,
            image_tokens=self.image_tokens,
            image_size=self.image_size,
            encode_s=stats.encode_s - self.stats0.encode_s,
            cache_loads=stats.cache_loads - self.stats0.cache_loads,
            cache_load_s=stats.cache_load_s - self.stats0.cache_load_s,
        )
        parsed = parse_answer(self.answer)
        s = settings
        return SearchResult(
            question=self.question, strategy=s.strategy, beam=s.beam, select=s.select,
            seed=s.seed, mode=mode, status=status, answer_text=self.answer,
            stages={st: parsed.stages.get(st, "") for st in STAGES},
            candidates=tuple(self.candidates), chosen=tuple(self.chosen),
            verdicts=tuple(self.verdicts), checks=tuple(self.checks), timings=timings,
            warnings=tuple(self.warnings),
        )


def candidate(unit: Stage | None, segment: int, s: Sampled) -> Candidate:
    """The event record of a sampled candidate."""
    return Candidate(unit, segment, s.index, s.text, s.n_tokens, s.mean_logprob,
                     s.finish or "cancelled", s.tokens, mean_entropy=s.mean_entropy)
