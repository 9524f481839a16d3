"""Plain, frozen events the search yields; front ends turn them into output or Qt signals.

A run yields, in order: :class:`RunStarted`, :class:`PromptEvaluated`, then per segment
(a stage, a sentence, or a whole answer) :class:`SegmentStarted`, many
:class:`TokenStreamed`, one :class:`CandidateFinished` per candidate, any
:class:`CorrectnessChecked` and :class:`JudgeVerdict`, then :class:`SegmentChosen`; finally
exactly one :class:`AnswerFinished` holding the whole :class:`SearchResult`. Warnings about
the run known before it starts (:class:`RunWarning`: a context longer than the model was
trained for, a picture outside what the model knows) follow :class:`RunStarted`, and the
result keeps them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from stagewise.models.stages import STAGES, Stage

Finish = Literal["closed", "eog", "length", "cancelled"]
Status = Literal["finished", "cancelled"]


@dataclass(frozen=True)
class Candidate:
    """One sampled continuation for a segment.

    Attributes:
        unit: The stage this segment belongs to, or None for a whole answer (best-of-N).
        segment: Index of the segment in the run (0, 1, ...).
        index: The candidate's number within its segment.
        text: Everything it generated, tags included.
        n_tokens: Tokens generated.
        mean_logprob: Mean log-probability of its tokens under the model (temperature 1).
        finish: Why it stopped: its closing tag, end of generation, the token limit, or a cancel.
        tokens: The token ids it sampled (end-of-generation excluded).
        score: The score its selection gave it (higher is better), once its segment was
            chosen in; None for a lone candidate or one not yet scored.
        mean_entropy: The mean entropy (nats) of the distributions its tokens were sampled
            from, where the backend sees them (None elsewhere).
    """

    unit: Stage | None
    segment: int
    index: int
    text: str
    n_tokens: int
    mean_logprob: float
    finish: Finish
    tokens: tuple[int, ...] = ()
    score: float | None = None
    mean_entropy: float | None = None


@dataclass(frozen=True)
class Verdict:
    """One pairwise judgement of the knockout tournament.

    Attributes:
        unit: The stage of the pair (None: whole answers or sentences).
        segment: The segment's number.
        round: The knockout's round, from 0.
        first: The candidate shown as "Response 1" (0-based).
        second: The candidate shown as "Response 2".
        winner: The candidate that won.
        reason: Why, in the judge's words (or the search's, for a failed check).
        text: The judge's whole reply ("" when none was written).
        forced: Runs saved before replies were free: the judge ran out of tokens and was
            asked for the digit directly.
        unread: The reply named no response; it was read as the reference reads it
            (response 2).
        probability: For verdicts decided by probabilities, the probability that the
            winner is the better (the two orders averaged); None for written verdicts.
    """

    unit: Stage | None
    segment: int
    round: int
    first: int
    second: int
    winner: int
    reason: str
    text: str
    forced: bool = False
    unread: bool = False
    probability: float | None = None


@dataclass(frozen=True)
class Check:
    """The text-only correctness check of a reasoning candidate."""

    segment: int
    candidate: int
    correct: bool
    text: str


@dataclass(frozen=True)
class Timings:
    total_s: float = 0.0
    prompt_s: float = 0.0
    judge_s: float = 0.0
    stage_s: dict[str, float] = field(default_factory=dict)
    image_encodes: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    decode_steps: int = 0
    earlier_turns: int = 0  # a follow-up: earlier turns of the thread in its prompt
    dropped_turns: int = 0  # a follow-up: its oldest turns, left out to fit the context
    encode_s: float = 0.0  # spent encoding the image (and the prompt up to its end)
    cache_loads: int = 0  # the image's prompt start read from the disk cache instead
    cache_load_s: float = 0.0
    image_tokens: int = 0  # tokens the image took in the prompt (0: not known, a server)
    image_size: tuple[int, int] = (0, 0)  # width, height as handed to the encoder

    @property
    def prefix_from(self) -> str:
        """Where the prompt up to the image's end came from: "encoded" for this answer,
        "cache" (the disk cache), or "memory" (kept from an earlier question, or prepared
        when the image arrived; on a server, its own prompt cache)."""
        if self.cache_loads:
            return "cache"
        return "encoded" if self.image_encodes else "memory"

    @property
    def tokens_per_s(self) -> float:
        gen = self.total_s - self.prompt_s - self.judge_s
        return self.generated_tokens / gen if gen > 0 else 0.0


@dataclass(frozen=True)
class SearchResult:
    question: str
    strategy: str
    beam: int
    select: str
    seed: int
    mode: str
    status: Status
    answer_text: str
    stages: dict[Stage, str]
    candidates: tuple[Candidate, ...]
    chosen: tuple[tuple[int, int], ...]  # (segment, candidate index) of each winner
    verdicts: tuple[Verdict, ...]
    checks: tuple[Check, ...]
    timings: Timings
    warnings: tuple[RunWarning, ...] = ()

    @property
    def conclusion(self) -> str:
        return self.stages.get(Stage.CONCLUSION, "")

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON-ready data (the shape ``stagewise ask --json`` prints)."""
        chosen = set(self.chosen)
        by_unit: dict[str, list[dict[str, Any]]] = {}
        for c in self.candidates:
            key = c.unit.value if c.unit else "answer"
            by_unit.setdefault(key, []).append({
                "segment": c.segment, "index": c.index, "text": c.text,
                "chosen": (c.segment, c.index) in chosen, "tokens": c.n_tokens,
                "mean_logprob": _finite(c.mean_logprob), "finish": c.finish,
                "score": None if c.score is None else _finite(c.score),
                "mean_entropy": None if c.mean_entropy is None else _finite(c.mean_entropy),
            })
        t = self.timings
        return {
            "question": self.question,
            "status": self.status,
            "strategy": self.strategy, "beam": self.beam, "select": self.select,
            "seed": self.seed, "mode": self.mode,
            "stages": {s.value: self.stages.get(s, "") for s in STAGES},
            "answer_text": self.answer_text,
            "candidates": by_unit,
            "verdicts": [
                {"unit": v.unit.value if v.unit else "answer", "segment": v.segment,
                 "round": v.round, "pair": [v.first, v.second], "winner": v.winner,
                 "reason": v.reason, "forced": v.forced, "unread": v.unread,
                 "probability": None if v.probability is None else _finite(v.probability)}
                for v in self.verdicts
            ],
            "checks": [
                {"segment": c.segment, "candidate": c.candidate, "correct": c.correct}
                for c in self.checks
            ],
            "warnings": [{"kind": w.kind, "text": w.text} for w in self.warnings],
            "timings": {
                "total_s": round(t.total_s, 4), "prompt_s": round(t.prompt_s, 4),
                "judge_s": round(t.judge_s, 4),
                "stage_s": {k: round(v, 4) for k, v in t.stage_s.items()},
                "image_encodes": t.image_encodes, "prompt_tokens": t.prompt_tokens,
                "generated_tokens": t.generated_tokens, "decode_steps": t.decode_steps,
                "tokens_per_s": round(t.tokens_per_s, 2),
                "earlier_turns": t.earlier_turns, "dropped_turns": t.dropped_turns,
                "image_tokens": t.image_tokens, "image_size": list(t.image_size),
                "prefix": {"from": t.prefix_from, "encode_s": round(t.encode_s, 4),
                           "cache_load_s": round(t.cache_load_s, 4)},
            },
        }


def _finite(value: float) -> float | None:
    """A number for JSON: rounded, or None where it is not finite (JSON has no -inf)."""
    return round(value, 4) if math.isfinite(value) else None


@dataclass(frozen=True)
class RunStarted:
    question: str
    strategy: str
    beam: int
    select: str
    mode: str
    seed: int


@dataclass(frozen=True)
class RunWarning:
    """Something about a run that makes its answer less trustworthy, known as it starts.

    Attributes:
        kind: What it is about: ``"context"`` (one answer or judgement can run longer than
            the model was trained for) or ``"outside"`` (the picture is not of the kind the
            model was trained on).
        text: One sentence for people.
    """

    kind: str
    text: str


@dataclass(frozen=True)
class PromptEvaluated:
    n_tokens: int
    n_positions: int
    seconds: float
    earlier_turns: int = 0  # a follow-up: earlier turns of the thread in the prompt
    dropped_turns: int = 0  # a follow-up: its oldest turns, left out to fit the context
    image_tokens: int = 0  # tokens the image took (0: not known, as on a server)
    image_size: tuple[int, int] = (0, 0)  # width, height of the image as sent


@dataclass(frozen=True)
class SegmentStarted:
    unit: Stage | None
    segment: int
    n_candidates: int
    prefix: str = ""  # text written before sampling (a prompted stage's open tag)


@dataclass(frozen=True)
class TokenStreamed:
    unit: Stage | None
    segment: int
    candidate: int
    text: str


@dataclass(frozen=True)
class CandidateFinished:
    candidate: Candidate


@dataclass(frozen=True)
class JudgingStarted:
    unit: Stage | None
    segment: int
    n_comparisons: int


@dataclass(frozen=True)
class CorrectnessChecked:
    check: Check


@dataclass(frozen=True)
class JudgeVerdict:
    verdict: Verdict


@dataclass(frozen=True)
class SegmentChosen:
    unit: Stage | None
    segment: int
    candidate: int
    text: str
    scores: tuple[float, ...]
    seconds: float


@dataclass(frozen=True)
class Retraced:
    """Retrace: the second-best reasoning score so far was not above the cutoff, so new
    captions are sampled (pass ``pass_no + 1`` follows)."""

    pass_no: int
    second_best: float
    cutoff: float


@dataclass(frozen=True)
class AnswerFinished:
    result: SearchResult


Event = (
    RunStarted | RunWarning | PromptEvaluated | SegmentStarted | TokenStreamed | CandidateFinished
    | JudgingStarted | CorrectnessChecked | JudgeVerdict | SegmentChosen | Retraced
    | AnswerFinished
)
