"""What a front end shows of one run, built from the search's events; Qt-free.

:class:`RunView` folds :mod:`stagewise.models.events` into per-stage state: the text a stage card
shows, its status, and every segment's candidates, verdicts and checks. The GUI feeds it
live events; a run restored from history is replayed into it with :meth:`RunView.from_result`,
so a restored run looks exactly like one that just finished.

Whole-answer segments (best-of-N) belong to every stage: each candidate's contribution to a
stage is the part of its answer inside that stage.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from stagewise.models.events import (
    AnswerFinished,
    Candidate,
    CandidateFinished,
    Check,
    CorrectnessChecked,
    Event,
    JudgeVerdict,
    JudgingStarted,
    Retraced,
    RunStarted,
    RunWarning,
    SearchResult,
    SegmentChosen,
    SegmentStarted,
    TokenStreamed,
    Verdict,
)
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.confidence import Confidence, confidence_of
from stagewise.models.reasoning.measured import picks_right
from stagewise.models.reasoning.selections import SELECTIONS, Selection
from stagewise.models.reasoning.strategies import STRATEGIES, Strategy
from stagewise.models.stages import STAGES, Stage, StageParser

_TAG = re.compile(r"</?(?:" + "|".join(s.name for s in STAGES) + r")>")


class StageStatus(StrEnum):
    WAITING = "waiting"
    SAMPLING = "sampling"
    JUDGING = "judging"
    CHOSEN = "chosen"
    STOPPED = "stopped"  # the run was cancelled or failed while this stage was open


class RunStatus(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the app stopped mid-answer (restored from history)


@dataclass
class CandidateView:
    """One candidate of a segment as shown: ``raw`` is what it wrote, tags included."""

    index: int
    raw: str = ""
    finished: bool = False
    finish: str | None = None
    n_tokens: int = 0
    mean_logprob: float | None = None
    score: float | None = None
    won: bool = False

    def content(self, stage: Stage, prefix: str = "", whole: bool = False) -> str:
        """Its text for ``stage``, without tags (for a whole answer: the part in ``stage``)."""
        if whole:
            parser = StageParser()
            parser.feed(prefix + self.raw)
            parser.finish()
            return parser.contents[stage].strip()
        return _TAG.sub("", self.raw).strip()


@dataclass
class SegmentView:
    """A segment: N candidates sampled together, then one chosen."""

    segment: int
    unit: Stage | None
    prefix: str = ""
    candidates: list[CandidateView] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    n_comparisons: int = 0
    chosen: int | None = None
    scores: tuple[float, ...] = ()
    seconds: float | None = None
    retraced: Retraced | None = None  # retrace: the search went back after this segment

    @property
    def whole(self) -> bool:
        return self.unit is None

    def content(self, candidate: CandidateView, stage: Stage) -> str:
        return candidate.content(stage, self.prefix, self.whole)


@dataclass
class StageView:
    """One stage card: its status, the text it shows and the segments that wrote it."""

    stage: Stage
    status: StageStatus = StageStatus.WAITING
    text: str = ""
    segments: list[SegmentView] = field(default_factory=list)
    seconds: float | None = None

    @property
    def n_candidates(self) -> int:
        return len(self.segments[-1].candidates) if self.segments else 0


class RunView:
    """The state of one run, folded from its events. Not thread-safe: one owner."""

    def __init__(self) -> None:
        self._reset()

    def doubts(self) -> list[str]:
        """Why the chosen answer deserves less trust than usual, one sentence each: a chosen
        candidate was cut at its token budget, the model's own correctness check said no
        to every candidate of a segment, or the judge's reply named no candidate (it was
        read as the reference reads it), or (runs saved before replies were free) the judge
        ran out of words and was made to choose. Each says what it is: the model judging
        itself, with how reliable that has measured, not a fact about the answer."""
        found = []
        judge = _judge_reliability()
        for seg in self.segments:
            where = seg.unit.title if seg.unit else "answer"
            if seg.chosen is not None and seg.chosen < len(seg.candidates) and \
                    seg.candidates[seg.chosen].finish == "length":
                what = f"The chosen {where}" if seg.unit else "The chosen answer"
                found.append(f"{what} was cut off at its token budget (Preferences → Tokens "
                             "per stage raises it).")
            if seg.checks and not any(c.correct for c in seg.checks):
                found.append(f"The model's own check called every {where} candidate wrong "
                             f"(one was kept anyway). It is the model judging itself{judge}, "
                             "so this is a reason for doubt, not a finding.")
            if any(v.unread for v in seg.verdicts):
                found.append(f"The judge's verdict on the {where} candidates named neither; "
                             "it was read as choosing the second, as the paper's code reads "
                             "it: that pick was forced, not judged.")
            if any(v.forced for v in seg.verdicts):
                found.append(f"The judge did not finish a verdict on the {where} candidates "
                             "and was made to choose.")
        return found

    def cautions(self) -> list[str]:
        """Everything to say under the answer: the run's warnings (known as it started),
        then, once it is over, its :meth:`doubts`."""
        texts = [w.text for w in self.warnings]
        return texts + (self.doubts() if self.done else [])

    @property
    def confidence(self) -> Confidence | None:
        """How sure the finished run is of its conclusion (None while it runs, or when
        it has none: :func:`~stagewise.models.reasoning.confidence.confidence_of`)."""
        return confidence_of(self.result) if self.result is not None else None

    def _reset(self) -> None:
        self.status = RunStatus.IDLE
        self.started: RunStarted | None = None
        self.result: SearchResult | None = None
        self.error = ""
        self.warnings: list[RunWarning] = []
        self._stages: dict[Stage, StageView] = {s: StageView(s) for s in STAGES}
        self._texts_stale = False
        self.segments: list[SegmentView] = []
        self._committed = ""  # the chosen answer so far, the search's open tags included
        self._best: dict[Stage, tuple[float, str]] = {}  # retrace: each stage's best so far

    # -- building -------------------------------------------------------------------------

    @classmethod
    def from_result(cls, result: SearchResult, status: RunStatus | None = None,
                    error: str = "") -> RunView:
        """The view of a finished (or saved, partial) run, replayed from its result."""
        view = cls()
        view.apply_all(replay(result))
        if status is not None and status is not view.status:
            view._end(status)
        view.error = error
        return view

    def apply_all(self, events: Iterable[Event]) -> set[Stage]:
        changed: set[Stage] = set()
        for event in events:
            changed |= self.apply(event)
        return changed

    def apply(self, event: Event) -> set[Stage]:
        """Fold one event in; return the stages whose card changed."""
        match event:
            case RunStarted():
                self._reset()
                self.started = event
                self.status = RunStatus.RUNNING
                return set(STAGES)
            case RunWarning():
                self.warnings.append(event)
                return {Stage.CONCLUSION}
            case SegmentStarted(unit=unit, segment=no, n_candidates=n, prefix=prefix):
                seg = SegmentView(no, unit, prefix, [CandidateView(i) for i in range(n)])
                self.segments.append(seg)
                for stage in self._stages_of(unit):
                    view = self._stages[stage]
                    view.segments.append(seg)
                    view.status = StageStatus.SAMPLING
                return self._refresh(unit)
            case TokenStreamed(segment=no, candidate=i, text=text):
                seg = self._segment(no)
                seg.candidates[i].raw += text
                return self._refresh(seg.unit) if i == 0 else self._stages_of(seg.unit)
            case CandidateFinished(candidate=c):
                seg = self._segment(c.segment)
                cv = seg.candidates[c.index]
                cv.raw, cv.finished, cv.finish = c.text, True, c.finish
                cv.n_tokens, cv.mean_logprob = c.n_tokens, c.mean_logprob
                return self._refresh(seg.unit) if c.index == 0 else self._stages_of(seg.unit)
            case JudgingStarted(unit=unit, segment=no, n_comparisons=n):
                self._segment(no).n_comparisons = n
                for stage in self._stages_of(unit):
                    self._stages[stage].status = StageStatus.JUDGING
                return self._stages_of(unit)
            case CorrectnessChecked(check=check):
                seg = self._segment(check.segment)
                seg.checks.append(check)
                return self._stages_of(seg.unit)
            case JudgeVerdict(verdict=v):
                seg = self._segment(v.segment)
                seg.verdicts.append(v)
                return self._stages_of(seg.unit)
            case SegmentChosen(unit=unit, segment=no, candidate=i, scores=scores,
                               seconds=seconds):
                seg = self._segment(no)
                seg.chosen, seg.scores, seg.seconds = i, scores, seconds
                for k, cv in enumerate(seg.candidates):
                    cv.won = k == i
                    cv.score = scores[k] if k < len(scores) else None
                if self.strategy is not None and self.strategy.keeps_best:
                    self._keep_best(seg, i, scores)
                else:
                    self._committed += seg.prefix + seg.candidates[i].raw
                for stage in self._stages_of(unit):
                    view = self._stages[stage]
                    view.status = StageStatus.CHOSEN
                    view.seconds = (view.seconds or 0.0) + seconds
                self._refresh_all()
                return self._stages_of(unit)
            case Retraced():
                last = self.segments[-1] if self.segments else None
                if last is not None:
                    last.retraced = event
                    return self._stages_of(last.unit)
                return set()
            case AnswerFinished(result=result):
                self.result = result
                live = self.stages  # brought up to date before the result's texts win
                for stage in STAGES:  # a stopped stage keeps what its leader had written
                    final = result.stages.get(stage, "").strip()
                    live[stage].text = final or live[stage].text
                    found = STRATEGIES.find(result.strategy)
                    whole = found is not None and found.whole_answer
                    key = "answer" if whole else stage.value
                    if key in result.timings.stage_s:
                        self._stages[stage].seconds = result.timings.stage_s[key]
                self._end(RunStatus(result.status))
                return set(STAGES)
        return set()

    def end(self, status: RunStatus, message: str = "") -> set[Stage]:
        """The run ended without an :class:`AnswerFinished` (it failed, or was stopped
        before the search began); nothing more will come."""
        self.error = message
        self._end(status)
        return set(STAGES)

    # -- reading --------------------------------------------------------------------------

    @property
    def stages(self) -> dict[Stage, StageView]:
        """Each stage's card state, texts up to date."""
        if self._texts_stale:
            self._recompute_texts()
        return self._stages

    @property
    def conclusion(self) -> str:
        return self._stages[Stage.CONCLUSION].text

    @property
    def strategy(self) -> Strategy | None:
        """The run's strategy, when it is one this app knows."""
        started = self.started.strategy if self.started else None
        return STRATEGIES.find(started or (self.result.strategy if self.result else None))

    @property
    def selection(self) -> Selection | None:
        """The run's selection, when it is one this app knows."""
        started = self.started.select if self.started else None
        return SELECTIONS.find(started or (self.result.select if self.result else None))

    @property
    def done(self) -> bool:
        return self.status not in (RunStatus.IDLE, RunStatus.RUNNING)

    # -- internals ------------------------------------------------------------------------

    def _end(self, status: RunStatus) -> None:
        self.status = status
        if status is not RunStatus.FINISHED:
            for view in self._stages.values():
                if view.status in (StageStatus.SAMPLING, StageStatus.JUDGING):
                    view.status = StageStatus.STOPPED

    def _keep_best(self, seg: SegmentView, i: int, scores: tuple[float, ...]) -> None:
        """Retrace: a stage shows the best-scored candidate so far of all its segments."""
        score = scores[i] if i < len(scores) else float("-inf")
        unit = seg.unit
        if unit is not None and (unit not in self._best or score > self._best[unit][0]):
            self._best[unit] = (score, seg.prefix.lstrip() + seg.candidates[i].raw)
        self._committed = "\n\n".join(self._best[st][1] for st in STAGES if st in self._best)

    def _segment(self, no: int) -> SegmentView:
        for seg in reversed(self.segments):
            if seg.segment == no:
                return seg
        raise KeyError(f"event for segment {no} before it started")

    @staticmethod
    def _stages_of(unit: Stage | None) -> set[Stage]:
        return set(STAGES) if unit is None else {unit}

    def _refresh(self, unit: Stage | None) -> set[Stage]:
        """Mark the card texts out of date; they are recomputed when next read, so a burst
        of streamed tokens costs one parse per render, not one per token."""
        self._texts_stale = True
        return self._stages_of(unit)

    def _refresh_all(self) -> None:
        self._refresh(None)

    def _recompute_texts(self) -> None:
        """Card texts: the chosen answer so far plus the leading candidate's stream."""
        self._texts_stale = False
        text = self._committed
        seg = self.segments[-1] if self.segments else None
        if seg is not None and seg.chosen is None and seg.candidates:
            text += seg.prefix + seg.candidates[0].raw
        parser = StageParser()
        parser.feed(text)
        parser.finish()
        for stage in STAGES:
            self._stages[stage].text = parser.contents[stage].strip()


@dataclass
class SavedSegment:
    """One segment of a finished (or saved) run: its candidates in order, its checks and
    verdicts, the winner, and a title for people (set by who shows it)."""

    no: int
    unit: Stage | None
    candidates: list[Candidate] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    chosen: int | None = None
    title: str = ""


def saved_segments(result: SearchResult) -> list[SavedSegment]:
    """``result``'s records grouped by segment, in segment order, candidates by index: what
    the replay and the exports both read."""
    segments: dict[int, SavedSegment] = {}
    for c in result.candidates:
        segments.setdefault(c.segment, SavedSegment(c.segment, c.unit)).candidates.append(c)
    for check in result.checks:
        if check.segment in segments:
            segments[check.segment].checks.append(check)
    for v in result.verdicts:
        segments.setdefault(v.segment, SavedSegment(v.segment, v.unit)).verdicts.append(v)
    for no, index in result.chosen:
        if no in segments:
            segments[no].chosen = index
    ordered = [segments[no] for no in sorted(segments)]
    for seg in ordered:
        seg.candidates.sort(key=lambda c: c.index)
    return ordered


def cautions_of(result: SearchResult) -> list[str]:
    """What to say under a finished or saved run's answer (:meth:`RunView.cautions`), for
    those that show a result without a view (``ask``, the exports)."""
    return RunView.from_result(result).cautions()


def replay(result: SearchResult) -> Iterator[Event]:
    """Events that rebuild ``result``'s view (tokens arrive whole, one event per candidate)."""
    yield RunStarted(result.question, result.strategy, result.beam, result.select,
                     result.mode, result.seed)
    yield from result.warnings
    prompted = result.mode == StageMode.PROMPTED.value
    seen_units: set[Stage | None] = set()
    for seg in saved_segments(result):
        cands, unit, no = seg.candidates, seg.unit, seg.no
        if not cands:
            continue
        prefix = ""
        if prompted and unit not in seen_units:
            prefix = (unit or Stage.SUMMARY).open_tag
        seen_units.add(unit)
        yield SegmentStarted(unit, no, len(cands), prefix)
        for c in cands:
            yield CandidateFinished(c)
        if seg.verdicts or seg.checks:
            yield JudgingStarted(unit, no, max(len(cands) - 1, 0))
        for check in seg.checks:
            yield CorrectnessChecked(check)
        for v in seg.verdicts:
            yield JudgeVerdict(v)
        if seg.chosen is not None:
            scores = _scores(cands, seg.verdicts, SELECTIONS.find(result.select))
            yield SegmentChosen(unit, no, seg.chosen, cands[seg.chosen].text, scores, 0.0)
    yield AnswerFinished(result)


def _judge_reliability() -> str:
    """``", which picked right N% of the time on the demo's puzzles"`` for the judge's
    correctness check (the judge selection's measured figure)."""
    record = picks_right("judge")
    if record is None:
        return ""
    return (f", and its judge chose right {record.picks_right:.0%} of the time on the "
            "demo's held-out puzzles (chance: 50%)")


def _scores(cands: list[Candidate], verdicts: list[Verdict],
            chosen_by: Selection | None) -> tuple[float, ...]:
    """A saved segment's scores: the ones its candidates kept; for runs saved before
    candidates kept them, the verdicts won (pairwise) or the mean log-probabilities."""
    if all(c.score is not None for c in cands):
        return tuple(c.score for c in cands if c.score is not None)
    if chosen_by is not None and chosen_by.pairwise and len(cands) > 1:
        return tuple(float(sum(v.winner == c.index for v in verdicts)) for c in cands)
    return tuple(c.mean_logprob for c in cands)
