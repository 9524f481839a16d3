"""Stage-level beam search (LLaVA-CoT) and its baselines, over one :class:`Engine`.

The answer grows segment by segment: a stage (stage-level beam search), a sentence
(sentence-level beam search) or the whole answer (best-of-N). For each segment:

1. the chosen text so far (the *root* sequence) is forked into N candidate sequences,
   which share its cache cells: the image and question are evaluated once per question;
2. every candidate samples its first token from the root's last logits, then all live
   candidates decode together, one batch per step, each with its own sampler chain;
3. one candidate is chosen, by mean log-probability or by the model judging pairs in a
   knockout tournament (pairs of a round judged in one batch, each judge prompt forked
   from the cached image prefix);
4. the winner's sequence becomes the new root; the others are dropped.

:meth:`StageSearch.run` yields :mod:`models.events` and ends with one
:class:`~models.events.AnswerFinished`, also when cancelled.
"""

from __future__ import annotations

import codecs
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from models import judge as judging
from models.engine import Bitmap, Engine, TokenizedPrompt
from models.errors import Cancelled, EngineError, StagewiseError
from models.events import (
    AnswerFinished,
    Candidate,
    CandidateFinished,
    Check,
    CorrectnessChecked,
    Event,
    Finish,
    JudgeVerdict,
    JudgingStarted,
    PromptEvaluated,
    RunStarted,
    SearchResult,
    SegmentChosen,
    SegmentStarted,
    Timings,
    TokenStreamed,
    Verdict,
)
from models.families import fit_pixels
from models.images import PreparedImage
from models.sampling import GREEDY, Sampler, mix_seed

if TYPE_CHECKING:
    from models.retrace import ModelScorer
from models.search_settings import (
    MAX_BEAM,
    RETRACE_SCORERS,
    SELECTIONS,
    STRATEGIES,
    SearchSettings,
    sequences_needed,
)
from models.stages import (
    STAGES,
    Stage,
    StageMode,
    StageParser,
    answer_grammar,
    parse_answer,
    stage_end,
    stage_grammar,
    user_text,
)


@dataclass
class _Stream:
    """A sequence being generated: a candidate, or a judge writing its verdict."""

    seq: int
    pos: int
    index: int
    sampler: Sampler
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    logprob_sum: float = 0.0
    n_scored: int = 0
    finish: Finish | None = None
    pending: list[int] = field(default_factory=list)  # sampled or forced, not yet in the cache
    parser: StageParser | None = None  # whole answers only: which stage the stream is in
    stage_tokens: int = 0  # tokens spent in the current stage (whole answers only)
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))

    @property
    def mean_logprob(self) -> float:
        return self.logprob_sum / self.n_scored if self.n_scored else float("-inf")


@dataclass(frozen=True)
class _Root:
    """Where the chosen text ends: its sequence, next position, pending tokens and text."""

    seq: int
    pos: int
    pending: list[int]
    tail: int | None
    answer: str


@dataclass(frozen=True)
class _Segment:
    unit: Stage | None
    grammar: str | None
    stop: Callable[[str], int | None]
    max_tokens: int
    prefix: str = ""  # text the search writes before sampling (a prompted stage's open tag)
    whole: bool = False  # a whole answer: enforce the per-stage budget inside it
    tail_stop: bool = True  # the stop is a close tag: it can only complete in the last piece
    sentence: bool = False  # the paper's next-sentence judging, no reasoning check


class StageSearch:
    """Runs searches on an engine, one question at a time (not thread-safe)."""

    def __init__(self, engine: Engine, settings: SearchSettings | None = None, *,
                 scorer_model: ModelScorer | None = None) -> None:
        """Check the settings against the engine.

        Args:
            engine: The loaded model.
            settings: The search's parameters.
            scorer_model: For retrace with the "model" scorer, the second model, loaded
                once by the caller; without it one is loaded for each run.
        """
        self.engine = engine
        self.settings = settings or SearchSettings()
        self.scorer_model = scorer_model
        s = self.settings
        if not 1 <= s.beam <= MAX_BEAM:
            raise StagewiseError(f"the beam width must be between 1 and {MAX_BEAM}")
        if s.strategy not in STRATEGIES:
            raise StagewiseError(f"unknown strategy {s.strategy!r}: use one of {STRATEGIES}")
        if s.select not in SELECTIONS:
            raise StagewiseError(f"unknown selection {s.select!r}: use one of {SELECTIONS}")
        needed = sequences_needed(s.beam, s.strategy)
        if needed > engine.settings.n_seq_max:
            raise StagewiseError(
                f"{s.strategy} search with beam width {s.beam} needs {needed} sequences, but "
                f"the engine was loaded with n_seq_max={engine.settings.n_seq_max}"
            )
        if s.strategy == "retrace":
            if s.retrace_scorer not in RETRACE_SCORERS:
                raise StagewiseError(f"unknown retrace scorer {s.retrace_scorer!r}: use one "
                                     f"of {RETRACE_SCORERS}")
            if s.retrace_scorer == "model" and scorer_model is None and s.scorer_model is None:
                raise StagewiseError("the model scorer needs a second model (--scorer-model)")
        self.mode = s.mode or engine.stage_mode

    # -- the run --------------------------------------------------------------------------

    def run(self, image: PreparedImage, question: str,
            cancel: threading.Event | None = None) -> Iterator[Event]:
        """Answer ``question`` about ``image``, yielding events.

        The last event is :class:`AnswerFinished`, also when ``cancel`` is set mid-run (its
        result's status says "cancelled" and keeps what was chosen so far).

        Raises:
            EngineError: llama.cpp failed (the context is full, say); nothing is yielded
                after it.
        """
        s, engine = self.settings, self.engine
        engine.cancel_event = cancel or threading.Event()
        self._reset(question)
        start = time.perf_counter()
        stats0 = (engine.stats.image_encodes, engine.stats.prompt_tokens,
                  engine.stats.decode_calls)
        yield RunStarted(question, s.strategy, s.beam, s.select, self.mode.value, s.seed)
        status = "finished"
        prompt: TokenizedPrompt | None = None
        try:
            engine.clear()
            with Bitmap(fit_pixels(image, engine.max_image_pixels)) as bitmap:
                self._bitmap = bitmap
                prompt_text = engine.chat_prompt(user_text(question, self.mode))
                prompt = engine.tokenize_prompt(prompt_text, bitmap, (question.strip(),))
                self._prefix = prompt
                self._learn_image_end(prompt_text, prompt)
                self._root_seq = self._alloc()
                self._root_pos = engine.eval_prompt(prompt, self._root_seq)
                tail = prompt.tail_tokens()
                self._root_tail = tail[-1] if tail else None
                self._root_logits = True
                self._prompt_s = time.perf_counter() - start
                yield PromptEvaluated(prompt.n_tokens, prompt.n_pos,
                                      self._prompt_s)
                if s.strategy == "retrace":
                    yield from self._retrace(image, question)
                else:
                    for segment in self._plan():
                        yield from self._run_segment(segment)
        except Cancelled:
            status = "cancelled"
            if self._in_flight is not None:  # keep what the candidates had written
                streams, unit, no = self._in_flight
                self._candidates += [self._record(st, unit, no) for st in streams]
        finally:
            if prompt is not None:
                prompt.close()
            self._bitmap = None
            self._release_all()
        timings = Timings(
            total_s=time.perf_counter() - start,
            prompt_s=self._prompt_s,
            judge_s=self._judge_s,
            stage_s=dict(self._stage_s),
            image_encodes=engine.stats.image_encodes - stats0[0],
            prompt_tokens=engine.stats.prompt_tokens - stats0[1],
            generated_tokens=self._generated,
            decode_steps=engine.stats.decode_calls - stats0[2],
        )
        parsed = parse_answer(self._answer)
        yield AnswerFinished(SearchResult(
            question=question, strategy=s.strategy, beam=s.beam, select=s.select,
            seed=s.seed, mode=self.mode.value, status=status, answer_text=self._answer,
            stages={st: parsed.stages.get(st, "") for st in STAGES},
            candidates=tuple(self._candidates), chosen=tuple(self._chosen),
            verdicts=tuple(self._verdicts), checks=tuple(self._checks), timings=timings,
        ))

    def _reset(self, question: str) -> None:
        self._question = question.strip()
        self._free = list(range(self.engine.settings.n_seq_max))
        self._streams_alive: list[_Stream] = []
        self._answer = ""
        self._pending: list[int] = []
        self._open_stage_tokens = 0  # tokens the root has written in the stage now open
        self._branch_seq: int | None = None  # retrace: the fork being continued
        self._answer_tokens = 0  # tokens the chosen segments hold
        self._answer_ended = False  # the chosen text ended the assistant's turn
        self._judging_sentences = False
        self._root_tail: int | None = None  # the last token in the root's cache
        self._root_logits = False  # whether the newest logits are the root's last token's
        self._segment_no = 0
        self._candidates: list[Candidate] = []
        self._chosen: list[tuple[int, int]] = []
        self._verdicts: list[Verdict] = []
        self._checks: list[Check] = []
        self._stage_s: dict[str, float] = {}
        self._prompt_s = self._judge_s = 0.0
        self._generated = 0
        self._stage_tokens: dict[Stage, int] = {}
        self._in_flight: tuple[list[_Stream], Stage | None, int] | None = None

    # -- what to generate -----------------------------------------------------------------

    def _plan(self) -> Iterator[_Segment]:
        """The segments of this run, in order.

        In prompted mode the search writes each stage's open tag itself, so candidates
        generate only the content and the close tag; a native model writes its own tags.
        """
        s, prompted = self.settings, self.mode is StageMode.PROMPTED
        if s.strategy == "best-of-n":
            yield _Segment(None, answer_grammar(opened=True) if prompted else None,
                           lambda t: stage_end(t, Stage.CONCLUSION), 4 * s.max_stage_tokens,
                           Stage.SUMMARY.open_tag if prompted else "", whole=True)
            return
        if s.strategy == "stage":
            for stage in STAGES:
                yield _Segment(stage, stage_grammar(stage, opened=True) if prompted else None,
                               lambda t, st=stage: stage_end(t, st), s.max_stage_tokens,
                               self._open(stage) if prompted else "")
            return
        # sentence (the paper's): the whole answer, one sentence at a time; a sentence ends
        # where the text written so far ends in "." (or the answer ends)
        total = 4 * s.max_stage_tokens
        while not self._answer_ended:
            parser = StageParser()
            parser.feed(self._answer)
            spent = self._answer_tokens
            if Stage.CONCLUSION in parser.closed or spent >= total:
                return
            stage = parser.current or next(
                (st for st in STAGES if st not in parser.opened), None)
            if stage is None:
                return
            first = not self._answer
            grammar = None
            if prompted:
                grammar = answer_grammar(stage, opened=first or parser.current is not None)
            yield _Segment(None, grammar, _paper_sentence_stop, total - spent,
                           stage.open_tag if prompted and first else "", whole=True,
                           tail_stop=False, sentence=True)

    def _stage_segment(self, stage: Stage) -> _Segment:
        """One stage as a segment, as stage-level search samples it."""
        prompted = self.mode is StageMode.PROMPTED
        return _Segment(stage, stage_grammar(stage, opened=True) if prompted else None,
                        lambda t, st=stage: stage_end(t, st), self.settings.max_stage_tokens,
                        self._open(stage) if prompted else "")

    def _retrace(self, image: PreparedImage, question: str) -> Iterator[Event]:
        from models import retrace

        s = self.settings
        owned = None
        if s.retrace_scorer == "model":
            scorer = self.scorer_model
            if scorer is None:
                owned = scorer = retrace.ModelScorer(s.scorer_model)
            scorer.start(image, question)
        elif s.retrace_scorer == "logprob":
            scorer = retrace.logprob_scores
        else:
            scorer = retrace.selfcheck_scores(self)
        try:
            yield from retrace.run_retrace(self, scorer)
        finally:
            if s.retrace_scorer == "model":
                scorer.finish()
            if owned is not None:
                owned.close()

    def _save_root(self) -> _Root:
        return _Root(self._root_seq, self._root_pos, list(self._pending), self._root_tail,
                     self._answer)

    def _restore_root(self, root: _Root) -> None:
        """Make a saved root the root again (its logits are gone: they are decoded anew)."""
        self._root_seq, self._root_pos, self._pending = root.seq, root.pos, list(root.pending)
        self._root_tail, self._answer, self._root_logits = root.tail, root.answer, False

    def _enter_branch(self, tokens: list[int], text: str) -> None:
        """Continue from a fork of the root, with ``tokens`` (spelling ``text``) to follow."""
        seq = self._alloc()
        self.engine.copy_seq(self._root_seq, seq, 0, self._root_pos)
        self._branch_seq = self._root_seq = seq
        self._pending = self._pending + tokens
        self._answer += text
        self._root_logits = False

    def _release_branch(self) -> None:
        if self._branch_seq is not None:
            self._release(self._branch_seq)
            self._branch_seq = None

    def _open(self, stage: Stage) -> str:
        return stage.open_tag if not self._answer else f"\n\n{stage.open_tag}"

    # -- one segment ----------------------------------------------------------------------

    def _run_segment(self, seg: _Segment) -> Iterator[Event]:
        s = self.settings
        no = self._segment_no
        t0 = time.perf_counter()
        streams, candidates = yield from self._sample_candidates(seg, s.beam)
        if len(streams) == 1:
            winner, scores = 0, (candidates[0].mean_logprob,)
        elif s.select == "logprob":
            scores = tuple(c.mean_logprob for c in candidates)
            winner = max(range(len(scores)), key=lambda i: (scores[i], -i))
        else:
            tj = time.perf_counter()
            winner = yield from self._tournament(seg.unit, no, candidates, seg.sentence)
            self._judge_s += time.perf_counter() - tj
            scores = tuple(float(sum(v.winner == c.index for v in self._verdicts
                                     if v.segment == no)) for c in candidates)
        self._commit(streams[winner], seg)
        self._chosen.append((no, winner))
        seconds = time.perf_counter() - t0
        key = seg.unit.value if seg.unit else "answer"
        self._stage_s[key] = self._stage_s.get(key, 0.0) + seconds
        self._segment_no += 1
        yield SegmentChosen(seg.unit, no, winner, candidates[winner].text, scores, seconds)

    def _sample_candidates(self, seg: _Segment, n: int
                           ) -> Iterator[Event]:
        """Fork ``n`` candidates from the root and generate them to their ends.

        Returns (as the generator's value) the streams, still holding their sequences, and
        their candidate records.
        """
        s, engine = self.settings, self.engine
        no = self._segment_no
        yield SegmentStarted(seg.unit, no, n, seg.prefix)
        self._force_text(seg.prefix)
        index = self._refresh_root()
        streams = []
        for i in range(n):
            seq = self._alloc()
            engine.copy_seq(self._root_seq, seq)
            sampler = Sampler(engine.vocab, s.sampling, mix_seed(s.seed, no, i), seg.grammar)
            stream = _Stream(seq, self._root_pos, i, sampler)
            if seg.whole:
                stream.parser = StageParser()
                stream.parser.feed(self._answer)
                stream.stage_tokens = self._open_stage_tokens
            streams.append(stream)
            self._streams_alive.append(stream)
        for stream in streams:
            self._sample(stream, index, seg)
            if stream.text:
                yield TokenStreamed(seg.unit, no, stream.index, stream.text)
        self._root_logits = False  # the candidates' decodes come next
        self._in_flight = (streams, seg.unit, no)
        yield from self._generate(streams, seg, no)
        self._in_flight = None
        candidates = [self._record(st, seg.unit, no) for st in streams]
        self._generated += sum(st.n_scored for st in streams)
        self._candidates += candidates
        for c in candidates:
            yield CandidateFinished(c)
        return streams, candidates

    def _generate(self, streams: list[_Stream], seg: _Segment, no: int) -> Iterator[Event]:
        """Decode all live streams together, one batch per step, until all stop."""
        engine = self.engine
        while live := [st for st in streams if st.finish is None]:
            tokens, positions, seqs, logits, last = [], [], [], [], []
            for st in live:
                n = len(st.pending)
                tokens += st.pending
                positions += range(st.pos, st.pos + n)
                seqs += [st.seq] * n
                logits += [False] * (n - 1) + [True]
                last.append(len(tokens) - 1)  # logits are read by batch position
            engine.decode(tokens, positions, seqs, logits)
            for st, index in zip(live, last, strict=True):
                st.pos += len(st.pending)
                st.pending = []
                before = len(st.text)
                self._sample(st, index, seg)
                if len(st.text) > before:
                    yield TokenStreamed(seg.unit, no, st.index, st.text[before:])

    def _sample(self, st: _Stream, index: int, seg: _Segment) -> None:
        """Sample the stream's next token from output ``index`` and decide whether it ends."""
        engine = self.engine
        token = st.sampler.sample(engine.ctx, index)
        st.logprob_sum += engine.token_logprob(index, token)
        st.n_scored += 1
        if engine.is_eog(token):
            st.finish = "eog"
            st.text += st.decoder.decode(b"", final=True)
            return
        st.tokens.append(token)
        st.pending = [token]
        piece = st.decoder.decode(engine.piece(token))
        st.text += piece
        # a close tag can only complete in the newest piece: look at the tail, not the whole
        seen = st.text[-(len(piece) + _TAG_WINDOW):] if seg.tail_stop else st.text
        if seg.stop(seen) is not None:
            st.finish = "closed"
        elif len(st.tokens) >= seg.max_tokens:
            st.finish = "length"
        elif st.parser is not None:
            self._keep_stage_budget(st, piece, seg)

    def _keep_stage_budget(self, st: _Stream, piece: str, seg: _Segment) -> None:
        """In a whole answer, close a stage that spent its budget and open the next one.

        The stream gets a fresh sampler whose grammar starts inside the next stage: forcing
        tokens through an existing grammar that might reject them would abort llama.cpp.
        """
        parser = st.parser
        stage = parser.current
        parser.feed(piece)
        st.stage_tokens = st.stage_tokens + 1 if parser.current is stage else 0
        stage = parser.current
        over = st.stage_tokens >= self.settings.max_stage_tokens
        if not over or stage is None or stage.next is None or st.text.endswith("<"):
            return
        forced = f"{stage.close_tag}\n\n{stage.next.open_tag}"
        parser.feed(forced)
        st.text += forced
        st.pending += self.engine.tokenize(forced)
        st.stage_tokens = 0
        if seg.grammar is not None:
            st.sampler.close()
            st.sampler = Sampler(self.engine.vocab, self.settings.sampling,
                                 mix_seed(self.settings.seed, self._segment_no, st.index,
                                          len(st.tokens)),
                                 answer_grammar(stage.next, opened=True))

    def _record(self, st: _Stream, unit: Stage | None, no: int) -> Candidate:
        return Candidate(unit, no, st.index, st.text, len(st.tokens), st.mean_logprob,
                         st.finish or "cancelled", tuple(st.tokens))

    # -- root bookkeeping -----------------------------------------------------------------

    def _refresh_root(self) -> int:
        """Decode the root's pending tokens; return the output index of its last logits.

        With nothing pending (the winner ended its turn, or wrote nothing), the root's last
        logits have been overwritten by the candidates' and judges' decodes since: its
        last token is decoded again in place to bring them back.
        """
        if not self._pending:
            if self._root_logits:
                return -1  # the prompt's last logits are still in place
            if self._root_tail is None:
                raise EngineError("the prompt ends without a text token to continue from")
            self._root_pos -= 1
            self.engine.remove_seq(self._root_seq, self._root_pos, -1)
            self._pending = [self._root_tail]
        index = self.engine.eval_tokens([(self._root_seq, self._root_pos, self._pending)])
        self._root_pos += len(self._pending)
        self._root_tail = self._pending[-1]
        self._pending = []
        self._root_logits = True
        return index[self._root_seq]

    def _commit(self, winner: _Stream, seg: _Segment) -> None:
        """Make the winner the root; drop the others and the old root."""
        for st in list(self._streams_alive):
            if st is not winner:
                self._drop(st)
        self._streams_alive.remove(winner)
        winner.sampler.close()
        self._release(self._root_seq)
        self._root_seq, self._root_pos = winner.seq, winner.pos
        self._pending = winner.pending
        if not winner.pending and winner.tokens:  # ended its turn: all it wrote is cached
            self._root_tail = winner.tokens[-1]
        self._answer += winner.text
        if seg.unit is not None:
            self._stage_tokens[seg.unit] = self._stage_tokens.get(seg.unit, 0) + len(
                winner.tokens)
        self._open_stage_tokens = winner.stage_tokens
        self._answer_tokens += len(winner.tokens)
        if winner.finish == "eog":
            self._answer_ended = True
        # a stage its budget cut off is closed; a sentence may end mid-stage, but a
        # sentence that spent the whole answer's budget closes the stage it is in
        if winner.finish == "length" or (winner.finish != "closed" and not seg.sentence):
            self._close_cut_stage(seg)

    def _close_cut_stage(self, seg: _Segment) -> None:
        """Keep the four-stage structure: close a stage that its token budget cut off.

        """
        parser = StageParser()
        parser.feed(self._answer)
        stage = parser.current
        if stage is None:
            return
        self._force_text(stage.close_tag)

    def _force_text(self, text: str) -> None:
        """Append text the search writes itself (tags) to the answer and the root's input."""
        if text:
            self._answer += text
            self._pending += self.engine.tokenize(text)

    def _alloc(self) -> int:
        if not self._free:
            raise EngineError("out of sequences: raise n_seq_max")
        return self._free.pop(0)

    def _release(self, seq: int) -> None:
        self.engine.remove_seq(seq)
        self._free.append(seq)

    def _drop(self, st: _Stream) -> None:
        st.sampler.close()
        self._release(st.seq)
        if st in self._streams_alive:
            self._streams_alive.remove(st)

    def _release_all(self) -> None:
        for st in list(self._streams_alive):
            st.sampler.close()
        self._streams_alive = []
        self.engine.clear()

    # -- judging --------------------------------------------------------------------------

    def _tournament(self, unit: Stage | None, no: int, candidates: list[Candidate],
                    sentence: bool = False) -> Iterator[Event]:
        """Knockout: pairs of a round are judged together; winners meet until one is left.

        For the paper's sentence-level search, each response is the new sentence alone and
        the hint is the answer so far; there is no reasoning check.
        """
        s = self.settings
        rng = random.Random(mix_seed(s.seed, no, 0x5EED))
        if sentence:
            responses = [c.text.strip() for c in candidates]
            hint = self._answer.strip()
        else:
            responses = [self._response_text(unit, c) for c in candidates]
            hint = self._hint(unit)
        self._judging_sentences = sentence
        pool = list(range(len(candidates)))
        rng.shuffle(pool)
        yield JudgingStarted(unit, no, len(pool) - 1)
        correct: dict[int, bool] = {}
        if unit is Stage.REASONING and s.check_reasoning and not sentence:
            checks = self._check_reasoning(no, responses)
            self._checks += checks
            for c in checks:
                correct[c.candidate] = c.correct
                yield CorrectnessChecked(c)
        round_no = 0
        donors: list[tuple[int, list[int]]] = []  # judge sequences whose cells can be reused
        first_and_won: set[int] = set()
        try:
            while len(pool) > 1:
                pool = yield from self._round(unit, no, round_no, pool, correct, responses,
                                              hint, donors, first_and_won)
                round_no += 1
        finally:
            for seq, _ in donors:
                self._release(seq)
        return pool[0]

    def _round(self, unit: Stage | None, no: int, round_no: int, pool: list[int],
               correct: dict[int, bool], responses: list[str], hint: str,
               donors: list[tuple[int, list[int]]],
               first_and_won: set[int]) -> Iterator[Event]:
        """One round of the knockout; returns the next pool."""
        pairs = []
        for i in range(0, len(pool) - 1, 2):
            a, b = pool[i], pool[i + 1]
            # a winner that was "Response 1" keeps that place: its judge prompt's start,
            # its own text included, is already in the cache
            pairs.append((b, a) if b in first_and_won and a not in first_and_won
                         else (a, b))
        bye = [pool[-1]] if len(pool) % 2 else []
        to_judge = []
        verdicts: dict[tuple[int, int], Verdict] = {}
        for a, b in pairs:
            if correct and correct[a] != correct[b]:
                loser = b if correct[a] else a
                verdicts[(a, b)] = Verdict(
                    unit, no, round_no, a, b, a if correct[a] else b,
                    f"candidate {loser + 1} failed the correctness check", "", False)
            else:
                to_judge.append((a, b))
        judged = self._judge_pairs(unit, no, round_no, to_judge, responses, hint, donors)
        for pair, v in zip(to_judge, judged, strict=True):
            verdicts[pair] = v
        first_and_won.clear()
        for pair in pairs:
            self._verdicts.append(verdicts[pair])
            if verdicts[pair].winner == pair[0] and verdicts[pair].text:
                first_and_won.add(pair[0])
            yield JudgeVerdict(verdicts[pair])
        return [verdicts[p].winner for p in pairs] + bye

    def _response_text(self, unit: Stage | None, c: Candidate) -> str:
        if unit is None:
            return c.text.strip()
        return parse_answer(self._answer + c.text).stages.get(unit, "") or c.text.strip()

    def _hint(self, unit: Stage | None) -> str:
        stages = parse_answer(self._answer).stages
        if unit is Stage.REASONING:
            return stages.get(Stage.CAPTION, "")
        if unit is Stage.CONCLUSION:
            return f"{stages.get(Stage.CAPTION, '')}\n{stages.get(Stage.REASONING, '')}".strip()
        return ""

    def _judge_pairs(self, unit: Stage | None, no: int, round_no: int,
                     pairs: list[tuple[int, int]], responses: list[str], hint: str,
                     donors: list[tuple[int, list[int]]]) -> list[Verdict]:
        """Judge several pairs at once, each forked from the cached image prefix.

        Each judge sequence stays in ``donors`` afterwards (the caller releases them), so
        that a later round can reuse its cells.
        """
        if not pairs:
            return []
        engine = self.engine
        shared = self._prefix.shared_pos
        streams, jobs = [], []
        try:
            for k, (a, b) in enumerate(pairs):
                text = judging.judge_text(unit, self._question, responses[a], responses[b], hint,
                                          sentence=self._judging_sentences)
                tail = self._tail_after_image(engine.chat_prompt(text), (
                    self._question, responses[a], responses[b], hint))
                seq = self._alloc()
                engine.copy_seq(self._root_seq, seq, 0, shared)
                stream = _Stream(seq, shared + len(tail), k,
                                 Sampler(engine.vocab, GREEDY, 0, judging.VERDICT_GRAMMAR))
                streams.append(stream)
                jobs.append(tail)
            index = self._eval_shared([st.seq for st in streams], shared, jobs, donors)
            donors += [(st.seq, tail) for st, tail in zip(streams, jobs, strict=True)]
            seg = _Segment(unit, None, _verdict_stop, self.settings.max_judge_tokens,
                           tail_stop=False)
            for st in streams:
                self._sample(st, index[st.seq], seg)
            for _ in self._generate(streams, seg, no):
                pass
            forced = self._force_choice([st for st in streams
                                         if judging.parse_verdict(st.text).choice is None])
            verdicts = []
            for (a, b), st in zip(pairs, streams, strict=True):
                parsed = judging.parse_verdict(st.text)
                choice = parsed.choice or forced[st.seq]
                text = st.text if parsed.choice else (
                    f"{st.text}{judging.FORCED_SUFFIX}{choice}.")
                verdicts.append(Verdict(unit, no, round_no, a, b, a if choice == 1 else b,
                                        parsed.reason, text, parsed.choice is None))
            return verdicts
        finally:
            for st in streams:
                st.sampler.close()
                if all(seq != st.seq for seq, _ in donors):
                    self._release(st.seq)

    def _learn_image_end(self, prompt_text: str, prompt: TokenizedPrompt) -> None:
        """Note the text before the image and the tokens libmtmd puts after it (such as
        ``<|vision_end|>``): a judge prompt with the same text before the image forks the
        cached image and needs only these plus its own text after the marker."""
        self._before_image = prompt_text.rpartition(self.engine.media_marker)[0]
        self._image_end = prompt.image_end

    def _tail_after_image(self, prompt_text: str, plain: tuple[str, ...]) -> list[int]:
        """Tokens of a prompt after the image; its start must match the cached prefix."""
        before, _, after = prompt_text.rpartition(self.engine.media_marker)
        if before == self._before_image:
            return self._image_end + self.engine.tokenize_plain(after, plain)
        tp = self.engine.tokenize_prompt(prompt_text, self._bitmap, plain)  # preprocesses it
        try:
            mine, cached = tp.chunks[: tp.media_end], self._prefix.chunks[: self._prefix.media_end]
            if mine != cached:
                raise EngineError("the chat template puts different text before the image in "
                                  "judge prompts, so the cached image cannot be shared")
            return tp.tail_tokens()
        finally:
            tp.close()

    def _force_choice(self, streams: list[_Stream]) -> dict[int, int]:
        """For judges out of budget, append the verdict phrase and compare "1" against "2"."""
        if not streams:
            return {}
        engine = self.engine
        suffix = engine.tokenize(judging.FORCED_SUFFIX)
        one, two = engine.tokenize("1")[-1], engine.tokenize("2")[-1]
        jobs = []
        for st in streams:
            jobs.append((st.seq, st.pos, st.pending + suffix))
        index = engine.eval_tokens(jobs)
        choice = {}
        for st in streams:
            row = engine.logits(index[st.seq])
            choice[st.seq] = 1 if row[one] >= row[two] else 2
        return choice

    def _check_reasoning(self, no: int, responses: list[str]) -> list[Check]:
        """Ask, text only, whether each reasoning is correct assuming the caption is true."""
        engine = self.engine
        caption = parse_answer(self._answer).stages.get(Stage.CAPTION, "")
        seqs, samplers, jobs = [], [], []
        try:
            for reasoning in responses:
                text = judging.check_text(self._question, caption, reasoning)
                tokens = engine.tokenize_plain(engine.chat_prompt(text, with_image=False),
                                               (self._question, caption, reasoning),
                                               add_special=True)
                seq = self._alloc()
                seqs.append(seq)
                samplers.append(Sampler(engine.vocab, GREEDY, 0, judging.CHECK_GRAMMAR))
                jobs.append(tokens)
            index = self._eval_shared(seqs, 0, jobs)
            checks = []
            for i, (seq, sampler) in enumerate(zip(seqs, samplers, strict=True)):
                token = sampler.sample(engine.ctx, index[seq])
                answer = engine.piece(token).decode("utf-8", "replace")
                checks.append(Check(no, i, answer.strip().lower().startswith("y"), answer))
            return checks
        finally:
            for seq in seqs:
                self._release(seq)
            for sampler in samplers:
                sampler.close()


    def _eval_shared(self, seqs: list[int], start: int, runs: list[list[int]],
                     donors: list[tuple[int, list[int]]] = ()) -> dict[int, int]:
        """Evaluate one token run per sequence, all from ``start``, reusing what is cached.

        A run whose start another sequence (a *donor*) already holds copies those cells;
        otherwise the runs' common prefix (the judge's task, question and hint; the
        check's question and caption) is evaluated once and shared.

        Returns:
            The batch position of each sequence's last token, where its logits are.
        """
        engine = self.engine
        limit = min(map(len, runs)) - 1  # each run keeps one token to produce logits
        common = len(_common_prefix(runs)[:limit]) if len(runs) > 1 else 0
        done = [0] * len(runs)
        group = []
        for i, run in enumerate(runs):
            best, donor = 0, None
            for seq, tokens in donors:
                n = min(len(_common_prefix([run, tokens])), len(run) - 1)
                if n > best:
                    best, donor = n, seq
            if donor is not None and best >= common:
                engine.copy_seq(donor, seqs[i], start, start + best)
                done[i] = best
            elif common:
                group.append(i)
        if group:
            lead = seqs[group[0]]
            engine.eval_tokens([(lead, start, runs[group[0]][:common])])
            for i in group:
                if seqs[i] != lead:
                    engine.copy_seq(lead, seqs[i], start, start + common)
                done[i] = common
        return engine.eval_tokens([(seq, start + n, run[n:])
                                   for seq, run, n in zip(seqs, runs, done, strict=True)])


def _common_prefix(runs: list[list[int]]) -> list[int]:
    first = runs[0]
    n = 0
    while n < len(first) and all(len(r) > n and r[n] == first[n] for r in runs):
        n += 1
    return first[:n]


_TAG_WINDOW = 48  # longer than any tag the parser accepts, blanks inside included


def _verdict_stop(text: str) -> int | None:
    return len(text) if judging.parse_verdict(text).choice is not None else None


def _paper_sentence_stop(text: str) -> int | None:
    """Where one of the paper's sentence segments ends: when the text written so far ends
    in "." (as the reference decides it), or the conclusion closes."""
    end = stage_end(text, Stage.CONCLUSION)
    if end is not None:
        return end
    return len(text) if text.endswith(".") else None
