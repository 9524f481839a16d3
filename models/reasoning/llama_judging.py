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

import numpy as np

from stagewise.models.errors import EngineError
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.mtmd_prompt import Bitmap, TokenizedPrompt, split_after_images
from stagewise.models.inference.sampling import GREEDY, Sampler
from stagewise.models.inference.sampling_settings import mix_seed
from stagewise.models.reasoning import judge as judging
from stagewise.models.reasoning.llama_streams import Stream, first_token, generate
from stagewise.models.reasoning.search_backend import Prompt, ReplyRequest, SampleRequest
from stagewise.models.reasoning.sequence_pool import SequencePool

__all__ = ["ImagePrefix", "JudgeCache", "check", "choice_probabilities", "yes_probability"]


class ImagePrefix:
    """The question's prompt up to and including its image (or images), as the cache
    holds it."""

    def __init__(self, engine: Engine, bitmap: Bitmap, prompt_text: str,
                 prompt: TokenizedPrompt) -> None:
        self.engine = engine
        self.bitmap = bitmap
        self.prompt = prompt
        self.shared_pos = prompt.shared_pos
        self.before_image: str | None = split_after_images(
            prompt_text, engine.media_marker, bitmap.count)[0]  # up to the last image's end
        self.image_end = prompt.image_end

    def chat_prompt(self, text: str) -> str:
        """A user turn about the question's images (as many as it has)."""
        return self.engine.chat_prompt(text, images=self.bitmap.count)

    def tail_after_image(self, prompt_text: str, plain: tuple[str, ...]) -> list[int]:
        """Tokens of a prompt after the image; its start must match the cached prefix.

        Raises:
            EngineError: The chat template puts other text before the image.
        """
        engine = self.engine
        before, after = split_after_images(prompt_text, engine.media_marker,
                                           self.bitmap.count)
        if before and before == self.before_image:
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
    """One knockout's prompts, answered with written replies (the judge) or with the
    probabilities of its choices (the verdict); their sequences with the image stay cached
    until it closes, so that a later round's prompts can reuse their cells."""

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

    def choice_probabilities(self, prompts: Sequence[Prompt], answer_start: str,
                             choices: Sequence[str]) -> list[tuple[float, ...]]:
        """For each prompt (with the image) and its answer begun with ``answer_start``: the
        probability of each choice's first token, among the choices.

        Each prompt's sequence stays cached for the knockout's next round, whose prompts
        begin as one of these did up to their second response (the round's winner first):
        they read only the second response and the end. Before a round, the sequences no
        new prompt can reuse are let go, so a round holds at most one kept sequence per
        prompt it asks.
        """
        if not prompts:
            return []
        engine, shared = self.engine, self.prefix.shared_pos
        jobs = [self.prefix.tail_after_image(self.prefix.chat_prompt(p.text) + answer_start,
                                             p.plain) for p in prompts]
        self._keep_donors_for(jobs)
        seqs = []
        try:
            for _ in jobs:
                seq = self.pool.take()
                engine.copy_seq(self.root, seq, 0, shared)
                seqs.append(seq)
            index = eval_shared(engine, seqs, shared, jobs, self.donors)
            rows = [engine.logits(index[seq]) for seq in seqs]
            out = [_shares(row, engine, choices) for row in rows]
        except BaseException:
            for seq in seqs:
                _release(engine, self.pool, seq)
            raise
        self.donors += list(zip(seqs, jobs, strict=True))
        return out

    def _keep_donors_for(self, runs: Sequence[list[int]]) -> None:
        """Keep, for each run, the kept sequence that shares the most with it beyond what
        the runs share with each other (the task, the question, the hint); let go of the
        rest. So a round never holds more kept sequences than it asks prompts."""
        common = len(_common_prefix(list(runs))) if len(runs) > 1 else 0
        wanted = set()
        for run in runs:
            shares = [(len(_common_prefix([run, tokens])), seq) for seq, tokens in self.donors]
            best = max(shares, default=(0, -1))
            if best[0] > common:
                wanted.add(best[1])
        for seq, _ in self.donors:
            if seq not in wanted:
                _release(self.engine, self.pool, seq)
        self.donors = [(seq, tokens) for seq, tokens in self.donors if seq in wanted]

    def reply(self, prompts: Sequence[Prompt], request: ReplyRequest) -> list[str]:
        """Write a reply to each prompt, all together: with the image, each forked from the
        cached image prefix; text only, each from the start of its own sequence."""
        if not prompts:
            return []
        engine = self.engine
        with_image = prompts[0].image
        start = self.prefix.shared_pos if with_image else 0
        streams: list[Stream] = []
        try:
            jobs = []
            for k, prompt in enumerate(prompts):
                if with_image:
                    tail = self.prefix.tail_after_image(self.prefix.chat_prompt(prompt.text),
                                                        prompt.plain)
                else:
                    tail = engine.tokenize_plain(
                        engine.chat_prompt(prompt.text, with_image=False), prompt.plain,
                        add_special=True)
                seq = self.pool.take()
                if with_image:
                    engine.copy_seq(self.root, seq, 0, start)
                sampler = Sampler(engine.vocab, request.sampling, mix_seed(request.seed, k))
                streams.append(Stream(seq, start + len(tail), k, sampler))
                jobs.append(tail)
            donors = self.donors if with_image else ()
            index = eval_shared(engine, [st.seq for st in streams], start, jobs, donors)
            if with_image:
                self.donors += [(st.seq, tail) for st, tail in zip(streams, jobs, strict=True)]
            sample = SampleRequest(len(prompts), request.seed, 0, request.sampling, None,
                                   request.stop, request.stop_strings, False,
                                   request.max_tokens)
            for _ in first_token(engine, streams, index, sample):
                pass
            for _ in generate(engine, streams, sample):
                pass
            return [_kept(st.text, request) for st in streams]
        finally:
            for st in streams:
                st.sampler.close()
                if all(seq != st.seq for seq, _ in self.donors):
                    _release(engine, self.pool, st.seq)


def _kept(text: str, request: ReplyRequest) -> str:
    """A reply up to its stop."""
    end = request.stop(text)
    return text if end is None else text[:end]


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
    return [yes_share(row, yes, no) for row in _answer_logits(engine, pool, prefix, root,
                                                              prompts, "")]


def choice_probabilities(engine: Engine, pool: SequencePool, prefix: ImagePrefix, root: int,
                         prompts: Sequence[Prompt], answer_start: str,
                         choices: Sequence[str]) -> list[tuple[float, ...]]:
    """For each prompt (with the image forked from ``root``) and its answer begun with
    ``answer_start``: the probability of each choice's first token, among the choices."""
    with JudgeCache(engine, pool, prefix, root) as cache:
        return cache.choice_probabilities(prompts, answer_start, choices)


def _shares(row: np.ndarray, engine: Engine, choices: Sequence[str]) -> tuple[float, ...]:
    """The probability of each choice's first token among the choices, from a row of
    logits."""
    picked = [float(row[engine.tokenize(choice, special=False)[-1]]) for choice in choices]
    top = max(picked)
    weights = [math.exp(v - top) for v in picked]
    total = sum(weights)
    return tuple(w / total for w in weights)


def _answer_logits(engine: Engine, pool: SequencePool, prefix: ImagePrefix, root: int,
                   prompts: Sequence[Prompt], answer_start: str) -> list[np.ndarray]:
    """The logits of the next token after each prompt and ``answer_start`` (copies)."""
    shared = prefix.shared_pos
    seqs, jobs = [], []
    try:
        for prompt in prompts:
            text = prefix.chat_prompt(prompt.text) + answer_start
            jobs.append(prefix.tail_after_image(text, prompt.plain))
            seq = pool.take()
            engine.copy_seq(root, seq, 0, shared)
            seqs.append(seq)
        index = eval_shared(engine, seqs, shared, jobs)
        return [np.array(engine.logits(index[seq])) for seq in seqs]
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


def _common_prefix(runs: list[list[int]]) -> list[int]:
    first = runs[0]
    n = 0
    while n < len(first) and all(len(r) > n and r[n] == first[n] for r in runs):
        n += 1
    return first[:n]


def _release(engine: Engine, pool: SequencePool, seq: int) -> None:
    engine.remove_seq(seq)
    pool.give_back(seq)
