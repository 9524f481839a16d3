"""Sequences that generate together: candidates, or judges writing their verdicts.

Every live stream decodes in one batch per step, each with its own sampler chain, until
each reaches its stop, its token budget or the end of its turn.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from stagewise.models.events import Finish
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.sampling import Sampler, mix_seed
from stagewise.models.reasoning.search_backend import Delta, Sampled, SampleRequest
from stagewise.models.reasoning.stage_grammar import answer_grammar
from stagewise.models.stages import TAG_WINDOW, StageParser

__all__ = ["Stream", "first_token", "generate", "token_stats"]

@dataclass
class Stream:
    """A sequence being generated."""

    seq: int
    pos: int
    index: int
    sampler: Sampler
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    logprob_sum: float = 0.0
    entropy_sum: float = 0.0
    n_scored: int = 0
    finish: Finish | None = None
    pending: list[int] = field(default_factory=list)  # sampled or forced, not yet in the cache
    parser: StageParser | None = None  # whole answers only: which stage the stream is in
    stage_tokens: int = 0  # tokens spent in the current stage (whole answers only)
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))

    def sampled(self) -> Sampled:
        mean = self.logprob_sum / self.n_scored if self.n_scored else float("-inf")
        entropy = self.entropy_sum / self.n_scored if self.n_scored else None
        return Sampled(self.index, self.text, tuple(self.tokens), len(self.tokens),
                       self.n_scored, mean, self.finish, self.stage_tokens, entropy)


def first_token(engine: Engine, streams: list[Stream], index: int | dict[int, int],
                request: SampleRequest) -> Iterator[Delta]:
    """Sample each stream's first token from the logits at ``index`` (one output for all,
    or one per sequence)."""
    for st in streams:
        at = index[st.seq] if isinstance(index, dict) else index
        _next_token(engine, st, at, request)
        if st.text:
            yield Delta(st.index, st.text)


def generate(engine: Engine, streams: list[Stream], request: SampleRequest
             ) -> Iterator[Delta]:
    """Decode all live streams together, one batch per step, until all stop."""
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
            _next_token(engine, st, index, request)
            if len(st.text) > before:
                yield Delta(st.index, st.text[before:])


def _next_token(engine: Engine, st: Stream, index: int, request: SampleRequest) -> None:
    """Sample the stream's next token from output ``index`` and decide whether it ends."""
    token = st.sampler.sample(engine.ctx, index)
    logprob, entropy = token_stats(engine.logits(index), token)
    st.logprob_sum += logprob
    st.entropy_sum += entropy
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
    seen = st.text[-(len(piece) + TAG_WINDOW):] if request.tail_stop else st.text
    if request.stop(seen) is not None:
        st.finish = "closed"
    elif len(st.tokens) >= request.max_tokens:
        st.finish = "length"
    elif st.parser is not None:
        _keep_stage_budget(engine, st, piece, request)


def _keep_stage_budget(engine: Engine, st: Stream, piece: str, request: SampleRequest) -> None:
    """In a whole answer, close a stage that spent its budget and open the next one.

    The stream gets a fresh sampler whose grammar starts inside the next stage: forcing
    tokens through an existing grammar that might reject them would abort llama.cpp.
    """
    parser, budget = st.parser, request.budget
    assert parser is not None and budget is not None
    stage = parser.current
    parser.feed(piece)
    st.stage_tokens = st.stage_tokens + 1 if parser.current is stage else 0
    stage = parser.current
    over = st.stage_tokens >= budget.limit
    if not over or stage is None or stage.next is None or st.text.endswith("<"):
        return
    forced = f"{stage.close_tag}\n\n{stage.next.open_tag}"
    parser.feed(forced)
    st.text += forced
    st.pending += engine.tokenize(forced)
    st.stage_tokens = 0
    if request.grammar is not None:
        st.sampler.close()
        st.sampler = Sampler(engine.vocab, request.sampling,
                             mix_seed(request.seed, request.segment, st.index, len(st.tokens)),
                             answer_grammar(stage.next, opened=True))


def token_stats(row: np.ndarray, token: int) -> tuple[float, float]:
    """log p(token) and the distribution's entropy (nats), from a row of raw logits: the
    distribution the sampler's chain starts from, at temperature 1, in one pass over it."""
    top = float(row.max())
    shifted = row - top
    weights = np.exp(shifted)
    total = weights.sum()
    log_total = float(np.log(total))
    entropy = log_total - float(np.dot(weights, shifted) / total)
    return float(row[token]) - top - log_total, entropy
