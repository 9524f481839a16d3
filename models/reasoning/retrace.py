"""Stage-wise retracing search (SWIRES), the final LLaVA-CoT paper's search, on one engine.

The reference (``inference/VLMEvalKit/swires.py``) scores candidates with an external reward
model; here the scorer is pluggable (:data:`SCORERS`):

* ``selfcheck``: the model's own probability of "Yes" to "Is this response correct?", one
  forward pass per candidate with the cached image, no second model;
* ``logprob``: the candidate's mean token log-probability (free);
* ``model``: a second GGUF vision model, given by path, asked the same question with the
  image (its own context; the image is encoded once per question there too).

The search, for one question:

1. the summary, once;
2. a pass: :data:`CAPTIONS` captions, the best :data:`KEPT` by score kept; for each kept
   caption :data:`REASONINGS` reasonings, each scored; every scored reasoning is kept across
   passes. If the second-best reasoning score so far is not above the cutoff, retrace: a new
   pass, at most :data:`MAX_RETRACES` times;
3. one conclusion for each of the :data:`FINALISTS` best reasonings; the best-scored one,
   with its caption and reasoning, is the answer.

The cutoff is a percentile of the scorer's scores on calibration questions (the paper: the
60th, mean + 0.2533 std of its reward model's scores); :func:`calibrate` measures it. Without
one, ``selfcheck`` and ``model`` use 0.5 (a reasoning more likely right than wrong) and
``logprob`` never retraces.

Branches are rebuilt from text: a kept caption is not held in a sequence while others are
sampled; its tokens are evaluated again on a fork of the summary, which costs a short
prefill, not a generation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from stagewise.models.errors import StagewiseError
from stagewise.models.events import Candidate, Event, Retraced, SegmentChosen
from stagewise.models.reasoning import judge as judging
from stagewise.models.reasoning.llama_judging import yes_no_tokens, yes_share
from stagewise.models.reasoning.search_backend import Piece, Prompt, SearchBackend
from stagewise.models.reasoning.segments import stage_segment
from stagewise.models.reasoning.stages import Stage, parse_answer
from stagewise.models.reasoning.tournament import response_text

if TYPE_CHECKING:
    from stagewise.models.inference.engine import Engine
    from stagewise.models.inference.images import PreparedImage
    from stagewise.models.reasoning.search import StageSearch

__all__ = ["CAPTIONS", "FINALISTS", "KEPT", "MAX_RETRACES", "REASONINGS", "SCORERS",
           "ModelScorer", "Scorer", "calibrate", "default_cutoff", "run_retrace"]

Scorer = Literal["selfcheck", "logprob", "model"]
SCORERS: tuple[Scorer, ...] = ("selfcheck", "logprob", "model")
CAPTIONS, KEPT, REASONINGS, FINALISTS, MAX_RETRACES = 4, 2, 2, 3, 4

_ASK = {
    Stage.CAPTION: "Does this response describe the parts of the image that matter for the "
                   "question correctly?",
    Stage.REASONING: "Is this reasoning, including any arithmetic, correct for the image and "
                     "the question?",
    Stage.CONCLUSION: "Is this the correct answer to the question?",
}


def default_cutoff(scorer: str) -> float:
    """The cutoff used when none was calibrated."""
    return -math.inf if scorer == "logprob" else 0.5


def scoring_text(stage: Stage, question: str, so_far: str, response: str) -> str:
    """The user turn that asks a scorer about one candidate (the image goes before it).

    A reasoning is asked about as stage-level search's reasoning check asks (the chosen
    caption as the description), which a LLaVA-CoT model may have been trained on.
    """
    if stage is Stage.REASONING:
        caption = parse_answer(so_far).stages.get(Stage.CAPTION, "")
        return judging.check_text(question, caption, response)
    parts = [f"Question: {question.strip()}"]
    if so_far.strip():
        parts.append(f"Answer so far: {so_far.strip()}")
    parts += [f"Response: {response.strip()}", f"{_ASK[stage]} Answer Yes or No."]
    return "\n\n".join(parts)


ScoreFn = Callable[[Stage, str, Sequence[str], Sequence[Candidate]], list[float]]
"""Scores candidates of a stage: (stage, answer so far, each candidate's stage text,
the candidates) → one score each, higher better."""


@dataclass(frozen=True)
class _Branch:
    """A point to continue from: the chosen text after the summary, as pieces and text,
    and the (segment, candidate) picks that wrote it."""

    pieces: tuple[Piece, ...]
    text: str
    picks: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class _Base:
    """The summary's end, which every branch continues from."""

    mark: object
    answer: str


@dataclass(frozen=True)
class _Scored:
    score: float
    reasoning: _Branch  # the caption's pieces, text and pick included


def run_retrace(search: StageSearch, image: PreparedImage) -> Iterator[Event]:
    """The retracing search on ``search``'s backend, after its prompt was evaluated."""
    s, run = search.settings, search.run_record
    assert run is not None
    owned = None
    if s.retrace_scorer == "model":
        scorer = search.scorer_model
        if scorer is None:
            owned = scorer = ModelScorer(s.scorer_model)
        scorer.start(image, run.question)
    elif s.retrace_scorer == "logprob":
        scorer = logprob_scores
    else:
        scorer = selfcheck_scores(search)
    try:
        yield from _retrace(search, scorer)
    finally:
        if isinstance(scorer, ModelScorer):
            scorer.finish()
        if owned is not None:
            owned.close()


def _retrace(search: StageSearch, scorer: ScoreFn) -> Iterator[Event]:
    s, run = search.settings, search.run_record
    assert run is not None
    cutoff = s.retrace_cutoff if s.retrace_cutoff is not None else default_cutoff(
        s.retrace_scorer)
    # 1. the summary, once; it stays the root every branch forks from
    summary = stage_segment(Stage.SUMMARY, s, search.mode, run.answer)
    sampled, candidates = yield from search.sample(summary, 1)
    search.keep(sampled[0], summary)
    run.chosen.append((run.segment, 0))
    yield SegmentChosen(Stage.SUMMARY, run.segment, 0, candidates[0].text,
                        (candidates[0].mean_logprob,), 0.0)
    run.segment += 1
    base = _Base(search.backend.mark(), run.answer)
    scored: list[_Scored] = []
    for pass_no in range(MAX_RETRACES + 1):
        captions = yield from _sample(search, base, _Branch((), ""), Stage.CAPTION, CAPTIONS,
                                      scorer)
        for caption in sorted(captions, key=lambda c: -c[0])[:KEPT]:
            reasonings = yield from _sample(search, base, caption[1], Stage.REASONING,
                                            REASONINGS, scorer)
            scored += [_Scored(score, branch) for score, branch in reasonings]
        ranked = sorted((x.score for x in scored), reverse=True)
        second = ranked[1] if len(ranked) > 1 else -math.inf
        if second > cutoff or pass_no == MAX_RETRACES:
            break
        yield Retraced(pass_no, second, cutoff)
    finalists = sorted(scored, key=lambda x: -x.score)[:FINALISTS]
    best: tuple[float, _Branch] | None = None
    for finalist in finalists:
        (score, conclusion), = yield from _sample(search, base, finalist.reasoning,
                                                  Stage.CONCLUSION, 1, scorer)
        if best is None or score > best[0]:
            best = (score, conclusion)
    assert best is not None
    search.backend.rewind(base.mark)
    run.answer = base.answer + best[1].text
    run.chosen += best[1].picks


def _sample(search: StageSearch, base: _Base, branch: _Branch, stage: Stage, n: int,
            scorer: ScoreFn) -> Iterator[Event]:
    """Sample ``n`` candidates of ``stage`` after ``branch``; score them; return
    ``[(score, branch extended by the candidate)]``."""
    t0 = time.perf_counter()
    run, backend = search.run_record, search.backend
    assert run is not None
    backend.rewind(base.mark)
    backend.branch(branch.pieces)
    run.answer = base.answer + branch.text
    seg = stage_segment(stage, search.settings, search.mode, run.answer)
    so_far = run.answer
    no = run.segment
    _, candidates = yield from search.sample(seg, n)
    responses = [response_text(stage, run.answer, c) for c in candidates]
    extended = []
    for c in candidates:
        closed = c.finish == "closed"
        pieces = [Piece(seg.prefix)] if seg.prefix else []
        pieces.append(Piece(c.text, c.tokens or None))
        if not closed:
            pieces.append(Piece(stage.close_tag))
        text = seg.prefix + c.text + ("" if closed else stage.close_tag)
        extended.append(_Branch((*branch.pieces, *pieces), branch.text + text,
                                (*branch.picks, (no, c.index))))
    backend.discard()
    scores = scorer(stage, so_far, responses, candidates)
    winner = max(range(n), key=lambda i: (scores[i], -i))
    run.segment += 1
    seconds = time.perf_counter() - t0
    run.add_time(stage, seconds)
    yield SegmentChosen(stage, no, winner, candidates[winner].text, tuple(scores), seconds)
    return list(zip(scores, extended, strict=True))


def logprob_scores(stage: Stage, so_far: str, responses: Sequence[str],
                   candidates: Sequence[Candidate]) -> list[float]:
    return [c.mean_logprob for c in candidates]


class ModelScorer:
    """A second GGUF vision model that scores candidates: P("Yes") to "Is this correct?".

    It loads its own engine (one context) and encodes each question's image once.
    """

    def __init__(self, model: Path, mmproj: Path | None = None, *,
                 threads: int | None = None) -> None:
        from stagewise.models.inference.engine import Engine
        from stagewise.models.inference.engine_settings import EngineSettings
        from stagewise.models.library.defaults import resolve_pair

        pair = resolve_pair(Path(model), mmproj)
        self.engine = Engine(pair.model, pair.mmproj,
                             EngineSettings(n_ctx=4096, n_seq_max=CAPTIONS + 1,
                                            threads=threads))
        self._yes, self._no = yes_no_tokens(self.engine)
        self._question = ""
        self._bitmap = None
        self._image_end: list[int] = []
        self._shared = 0
        self._before = ""

    def start(self, image: PreparedImage, question: str) -> None:
        """Encode the question's image once (into sequence 0)."""
        from stagewise.models.inference.families import fit_pixels
        from stagewise.models.inference.mtmd_prompt import Bitmap

        self.finish()
        engine = self.engine
        engine.clear()
        self._question = question
        self._bitmap = Bitmap(fit_pixels(image, engine.max_image_pixels))
        text = engine.chat_prompt(scoring_text(Stage.CAPTION, question, "", "x"))
        self._before = text.rpartition(engine.media_marker)[0]
        prompt = engine.tokenize_prompt(text, self._bitmap, (question,))
        try:
            self._shared = prompt.shared_pos
            self._image_end = prompt.image_end
            if not any(c.is_image for c in prompt.chunks):
                raise StagewiseError("the scorer's chat template puts no image in its prompt")
            engine.eval_prompt(prompt, 0)
        finally:
            prompt.close()

    def __call__(self, stage: Stage, so_far: str, responses: Sequence[str],
                 candidates: Sequence[Candidate]) -> list[float]:
        engine = self.engine
        scores = []
        for response in responses:
            text = engine.chat_prompt(scoring_text(stage, self._question, so_far, response))
            before, _, after = text.rpartition(engine.media_marker)
            if before != self._before:
                raise StagewiseError("the scorer's template changes the text before the image")
            tail = self._image_end + engine.tokenize_plain(after, (self._question, so_far,
                                                                   response))
            engine.remove_seq(1)
            engine.copy_seq(0, 1, 0, self._shared)
            index = engine.eval_tokens([(1, self._shared, tail)])
            scores.append(yes_share(engine.logits(index[1]), self._yes, self._no))
        engine.remove_seq(1)
        return scores

    def finish(self) -> None:
        if self._bitmap is not None:
            self._bitmap.close()
            self._bitmap = None

    def close(self) -> None:
        self.finish()
        self.engine.close()


def selfcheck_scores(search: StageSearch) -> ScoreFn:
    """The searching model's own P("Yes"), with the image it already holds."""

    def score(stage: Stage, so_far: str, responses: Sequence[str],
              candidates: Sequence[Candidate]) -> list[float]:
        assert search.run_record is not None
        question = search.run_record.question.strip()
        return search.backend.yes_probability([
            Prompt(scoring_text(stage, question, so_far, response),
                   (question, so_far, response)) for response in responses])

    return score


def calibrate(backend: SearchBackend | Engine, items: Sequence[tuple[PreparedImage, str]],
              settings: object, percentile: float = 60.0,
              scorer_model: ModelScorer | None = None) -> float:
    """The cutoff: ``percentile`` of the scorer's reasoning scores on calibration questions.

    Each question runs one pass of the search (no retrace) and every reasoning it scores
    counts.
    """
    from dataclasses import replace

    from stagewise.models.reasoning.search import StageSearch

    settings = replace(settings, strategy="retrace", retrace_cutoff=-math.inf)  # one pass
    scores: list[float] = []
    for image, question in items:
        search = StageSearch(backend, settings, scorer_model=scorer_model)
        for event in search.run(image, question):
            if isinstance(event, SegmentChosen) and event.unit is Stage.REASONING:
                scores += event.scores
    if not scores:
        raise StagewiseError("calibration scored no reasoning")
    return float(np.percentile(scores, percentile))
