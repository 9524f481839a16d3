"""The judge's prompts on llama.cpp: each forks the question's cached image.

A judge prompt with the same text before the image as the question's prompt needs only
the tokens libmtmd puts after the image (such as ``<|vision_end|>``) plus its own text;
prompts of one batch share their common start, and a knockout's later rounds reuse what
earlier rounds' prompts left in the cache.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import TracebackType

from stagewise.models.errors import EngineError
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.mtmd_prompt import Bitmap, TokenizedPrompt
from stagewise.models.inference.sampling import GREEDY, Sampler
from stagewise.models.reasoning import judge as judging
from stagewise.models.reasoning.llama_streams import Stream, first_token, generate
from stagewise.models.reasoning.search_backend import JudgeReply, Prompt, SampleRequest
from stagewise.models.reasoning.sequence_pool import SequencePool

__all__ = ["ImagePrefix", "JudgeCache", "check", "yes_probability"]


class ImagePrefix:
    """The question's prompt up to and including its image, as the cache holds it."""

    def __init__(self, engine: Engine, bitmap: Bitmap, prompt_text: str,
                 prompt: TokenizedPrompt) -> None:
        self.engine = engine
        self.bitmap = bitmap
        self.prompt = prompt
        self.shared_pos = prompt.shared_pos
        self.before_image: str | None = prompt_text.rpartition(engine.media_marker)[0]
        self.image_end = prompt.image_end

    def tail_after_image(self, prompt_text: str, plain: tuple[str, ...]) -> list[int]:
        """Tokens of a prompt after the image; its start must match the cached prefix.

        Raises:
            EngineError: The chat template puts other text before the image.
        """
        engine = self.engine
        before, _, after = prompt_text.rpartition(engine.media_marker)
        if before == self.before_image:
            return self.image_end + engine.tokenize_plain(after, plain)
        tp = engine.tokenize_prompt(prompt_text, self.bitmap, plain)  # preprocesses it
        try:
            mine = tp.chunks[: tp.media_end]
            if mine != self.prompt.chunks[: self.prompt.media_end]:
                raise EngineError("the chat template puts different text before the image in "
                                  "judge prompts, so the cached image cannot be shared")
            return tp.tail_tokens()
        finally:
            tp.close()

    def close(self) -> None:
        self.prompt.close()
        self.bitmap.close()


class JudgeCache:
    """One knockout's judgements; its judge sequences stay cached until it closes, so
    that a later round can reuse their cells."""

    def __init__(self, engine: Engine, pool: SequencePool, prefix: ImagePrefix,
                 root: int) -> None:
        self.engine, self.pool, self.prefix, self.root = engine, pool, prefix, root
        self.donors: list[tuple[int, list[int]]] = []  # (sequence, its tokens after the image)

    def __enter__(self) -> JudgeCache:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for seq, _ in self.donors:
            _release(self.engine, self.pool, seq)
        self.donors = []

    def judge(self, prompts: Sequence[Prompt], max_tokens: int) -> list[JudgeReply]:
        """Judge several pairs at once, each forked from the cached image prefix."""
        if not prompts:
            return []
        engine, shared = self.engine, self.prefix.shared_pos
        streams: list[Stream] = []
        try:
            jobs = []
            for k, prompt in enumerate(prompts):
                tail = self.prefix.tail_after_image(engine.chat_prompt(prompt.text),
                                                    prompt.plain)
                seq = self.pool.take()
                engine.copy_seq(self.root, seq, 0, shared)
                streams.append(Stream(seq, shared + len(tail), k,
                                      Sampler(engine.vocab, GREEDY, 0, judging.VERDICT_GRAMMAR)))
                jobs.append(tail)
            index = eval_shared(engine, [st.seq for st in streams], shared, jobs, self.donors)
            self.donors += [(st.seq, tail) for st, tail in zip(streams, jobs, strict=True)]
            request = SampleRequest(len(prompts), 0, 0, GREEDY, judging.VERDICT_GRAMMAR,
                                    _verdict_stop, (), False, max_tokens)
            for _ in first_token(engine, streams, index, request):
                pass
            for _ in generate(engine, streams, request):
                pass
            return self._replies(streams)
        finally:
            for st in streams:
                st.sampler.close()
                if all(seq != st.seq for seq, _ in self.donors):
                    _release(engine, self.pool, st.seq)

    def _replies(self, streams: list[Stream]) -> list[JudgeReply]:
        undecided = [st for st in streams if judging.parse_verdict(st.text).choice is None]
        forced = _force_choice(self.engine, undecided)
        replies = []
        for st in streams:
            parsed = judging.parse_verdict(st.text)
            choice = parsed.choice or forced[st.seq]
            text = st.text if parsed.choice else f"{st.text}{judging.FORCED_SUFFIX}{choice}."
            replies.append(JudgeReply(text, choice, parsed.reason, parsed.choice is None))
        return replies


def check(engine: Engine, pool: SequencePool, prompts: Sequence[Prompt]) -> list[str]:
    """Ask each prompt, text only, for a greedy "Yes" or "No"."""
    seqs, samplers, jobs = [], [], []
    try:
        for prompt in prompts:
            tokens = engine.tokenize_plain(engine.chat_prompt(prompt.text, with_image=False),
                                           prompt.plain, add_special=True)
            seqs.append(pool.take())
            samplers.append(Sampler(engine.vocab, GREEDY, 0, judging.CHECK_GRAMMAR))
            jobs.append(tokens)
        index = eval_shared(engine, seqs, 0, jobs)
        answers = []
        for seq, sampler in zip(seqs, samplers, strict=True):
            token = sampler.sample(engine.ctx, index[seq])
            answers.append(engine.piece(token).decode("utf-8", "replace"))
        return answers
    finally:
        for seq in seqs:
            _release(engine, pool, seq)
        for sampler in samplers:
            sampler.close()


def yes_probability(engine: Engine, pool: SequencePool, prefix: ImagePrefix, root: int,
                    prompts: Sequence[Prompt]) -> list[float]:
    """P("Yes") against "No" as the first token of the answer to each prompt (with the
    image forked from ``root``)."""
    yes, no = yes_no_tokens(engine)
    shared = prefix.shared_pos
    seqs, jobs = [], []
    try:
        for prompt in prompts:
            jobs.append(prefix.tail_after_image(engine.chat_prompt(prompt.text), prompt.plain))
            seq = pool.take()
            engine.copy_seq(root, seq, 0, shared)
            seqs.append(seq)
        index = eval_shared(engine, seqs, shared, jobs)
        return [yes_share(engine.logits(index[seq]), yes, no) for seq in seqs]
    finally:
        for seq in seqs:
            _release(engine, pool, seq)


def yes_no_tokens(engine: Engine) -> tuple[int, int]:
    return engine.tokenize("Yes")[-1], engine.tokenize("No")[-1]


def yes_share(row: Sequence[float], yes: int, no: int) -> float:
    """The probability of ``yes`` among ``yes`` and ``no``, from a row of logits."""
    a, b = float(row[yes]), float(row[no])
    top = max(a, b)
    return math.exp(a - top) / (math.exp(a - top) + math.exp(b - top))


def eval_shared(engine: Engine, seqs: list[int], start: int, runs: list[list[int]],
                donors: Sequence[tuple[int, list[int]]] = ()) -> dict[int, int]:
    """Evaluate one token run per sequence, all from ``start``, reusing what is cached.

    A run whose start another sequence (a *donor*) already holds copies those cells;
    otherwise the runs' common prefix (the judge's task, question and hint; the check's
    question and caption) is evaluated once and shared.

    Returns:
        The batch position of each sequence's last token, where its logits are.
    """
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


def _force_choice(engine: Engine, streams: list[Stream]) -> dict[int, int]:
    """For judges out of budget, append the verdict phrase and compare "1" against "2"."""
    if not streams:
        return {}
    suffix = engine.tokenize(judging.FORCED_SUFFIX)
    one, two = engine.tokenize("1")[-1], engine.tokenize("2")[-1]
    index = engine.eval_tokens([(st.seq, st.pos, st.pending + suffix) for st in streams])
    choice = {}
    for st in streams:
        row = engine.logits(index[st.seq])
        choice[st.seq] = 1 if row[one] >= row[two] else 2
    return choice


def _common_prefix(runs: list[list[int]]) -> list[int]:
    first = runs[0]
    n = 0
    while n < len(first) and all(len(r) > n and r[n] == first[n] for r in runs):
        n += 1
    return first[:n]


def _verdict_stop(text: str) -> int | None:
    return len(text) if judging.parse_verdict(text).choice is not None else None


def _release(engine: Engine, pool: SequencePool, seq: int) -> None:
    engine.remove_seq(seq)
    pool.give_back(seq)
