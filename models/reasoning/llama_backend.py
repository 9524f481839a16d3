"""The search's backend on llama.cpp in this process: one context, many sequences.

* The question's prompt, image included, is evaluated once into the *root* sequence: its
  part up to the image's end through a
  :class:`~stagewise.models.reasoning.llama_prefix.PrefixKeeper` (kept from an earlier
  question, prepared when the image arrived, read from the disk cache, or encoded), then
  the question's own tokens.
* A sample forks the root into N candidate sequences, which share its cache cells; every
  candidate samples its first token from the root's last logits, then all live candidates
  decode together, one batch per step, each with its own sampler chain.
* Keeping a candidate makes its sequence the new root; the others are dropped.
* Judge and check prompts fork the cached image prefix
(:mod:`stagewise.models.reasoning.llama_judging`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np

from stagewise.models.errors import EngineError, StagewiseError
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.images import Images, PreparedImage, image_list
from stagewise.models.inference.mtmd_prompt import Bitmap, TokenizedPrompt, split_after_images
from stagewise.models.inference.prefix_cache import PrefixCache
from stagewise.models.inference.sampling import Sampler, mix_seed
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.llama_judging import (
    ImagePrefix,
    JudgeCache,
    check,
    choice_probabilities,
    yes_probability,
)
from stagewise.models.reasoning.llama_prefix import PrefixKeeper, common_start, images_key
from stagewise.models.reasoning.llama_streams import Stream, first_token, generate
from stagewise.models.reasoning.search_backend import (
    BackendStats,
    Delta,
    JudgeSession,
    Piece,
    PrefixReport,
    Prompt,
    PromptInfo,
    Sampled,
    SampleRequest,
)
from stagewise.models.reasoning.sequence_pool import SequencePool
from stagewise.models.stages import StageParser, user_text

__all__ = ["LlamaBackend"]

@dataclass(frozen=True)
class _Root:
    """Where the chosen text ends: its sequence, next position, pending tokens, and the
    last token in its cache."""

    seq: int
    pos: int
    pending: tuple[int, ...]
    tail: int | None


class LlamaBackend:
    """:class:`~stagewise.models.reasoning.search_backend.SearchBackend` over one
    :class:`Engine`."""

    def __init__(self, engine: Engine, *, keep_image: bool = False,
                 prefix_cache: PrefixCache | None = None) -> None:
        """Answer on ``engine``.

        Args:
            engine: The loaded model; the backend owns its sequences while it answers.
            keep_image: Between questions, keep the last image in the engine's cache so
                that a next question about it does not encode it again (for an engine
                nothing else uses between questions, such as a session's).
            prefix_cache: Where encoded images are kept on disk (None: nowhere).
        """
        self.engine = engine
        self.keep_image = keep_image
        self._pool = SequencePool(engine.settings.n_seq_max)
        self._streams: list[Stream] = []  # alive, of any sample not yet kept or discarded
        self._last: list[Stream] = []  # the last sample's
        self._in_flight: list[Stream] = []
        self._prefix: ImagePrefix | None = None
        self._root = _Root(0, 0, (), None)
        self._root_logits = False  # whether the newest logits are the root's last token's
        self._branch: int | None = None  # retrace: the fork being continued
        self.prefixes = PrefixKeeper(engine, prefix_cache)  # the image sequence 0 holds
        self._shared_text: dict[tuple[StageMode, int], tuple[int, ...]] = {}  # after the
        # images, per mode and number of images

    # -- what the search reads ------------------------------------------------------------

    @property
    def stage_mode(self) -> StageMode:
        return self.engine.stage_mode

    @property
    def max_candidates(self) -> int:
        return self.engine.settings.n_seq_max

    @property
    def measures_entropy(self) -> bool:
        return True

    @property
    def several_images(self) -> bool:
        """Whether one question may be about several images (the family's template takes
        them)."""
        return self.engine.adapter.several_images

    def stats(self) -> BackendStats:
        s, p = self.engine.stats, self.prefixes
        return BackendStats(s.image_encodes, s.prompt_tokens, s.decode_calls, s.encode_s,
                            p.cache_loads, p.cache_load_s)

    # -- an image, before its question ----------------------------------------------------

    def prepare(self, image: Images, mode: StageMode, cancel: threading.Event
                ) -> PrefixReport:
        """Evaluate the prompt up to the end of ``image`` into sequence 0, so that a
        question about it then evaluates only its own tokens (:meth:`begin`).

        Done only where the prompt before the image is the same whatever the question:
        every family's template puts the image first in the user's turn, but a template
        that wrote the question (or the stage instruction) before it would make the
        prepared cells useless, and the report then says so and nothing is done.

        Raises:
            Cancelled: ``cancel`` was set (the encode stops part-way); nothing is kept.
            EngineError, ChatTemplateError: The prompt could not be made or evaluated.
        """
        engine = self.engine
        engine.cancel_event = cancel
        fitted = self._fitted(image)
        texts = [engine.chat_prompt(user_text(question, each), images=len(fitted))
                 for question in _PROBES for each in (mode, *StageMode)]
        heads = {text.rpartition(engine.media_marker)[0] for text in texts}
        if len(heads) != 1:
            return PrefixReport("", reason="the chat template puts text that depends on "
                                           "the question before the image")
        with Bitmap(fitted) as bitmap:
            prompt = engine.tokenize_prompt(texts[0], bitmap)
            try:
                key = (images_key(fitted), tuple(prompt.chunks[: prompt.media_end]))
                self._pool.reset()
                return self.prefixes.ensure(prompt, key,
                                            after=self._after_image(mode, prompt, bitmap.count),
                                            save_now=True)
            finally:
                prompt.close()

    def _after_image(self, mode: StageMode, prompt: TokenizedPrompt, images: int = 1
                     ) -> tuple[int, ...]:
        """The text tokens every question's prompt in ``mode`` has right after the image
        (``prompt`` is one such prompt): a prompted model's stage instruction, with the
        tokens libmtmd puts after the image before it; none where the questions share no
        text there (a native model's)."""
        shared = self._shared_text.get((mode, images))
        if shared is None:
            engine = self.engine
            tails = [engine.tokenize_plain(split_after_images(
                engine.chat_prompt(user_text(question, mode), images=images),
                engine.media_marker, images)[1], (question,)) for question in _PROBES]
            shared = self._shared_text[(mode, images)] = common_start(*tails)
        return (*prompt.image_end, *shared) if shared else ()

    # -- a question -----------------------------------------------------------------------

    def begin(self, image: Images, question: str, mode: StageMode,
              cancel: threading.Event, *, earlier: Sequence[tuple[str, str]] = (),
              room: int = 0) -> PromptInfo:
        """Evaluate the question's prompt into the root sequence.

        A question about the image the last question was about (the same pixels, the same
        text before them) reuses the image's cells, which :meth:`end` kept in sequence 0:
        only the text after the image is evaluated, and the image is not encoded again.
        A follow-up's ``earlier`` turns are part of that text (the image is in the first
        user turn), so a follow-up does not encode the image again either.
        """
        engine = self.engine
        engine.cancel_event = cancel
        self._pool.reset()
        self._streams, self._last, self._in_flight, self._branch = [], [], [], None
        fitted = self._fitted(image)
        bitmap = Bitmap(fitted)
        prompt: TokenizedPrompt | None = None
        try:
            prompt_text, prompt, dropped = self._fit_thread(question, mode, bitmap, earlier,
                                                            room)
            self._prefix = ImagePrefix(engine, bitmap, prompt_text, prompt)
            seq = self._pool.take()
            key = (images_key(fitted), tuple(prompt.chunks[: prompt.media_end]))
            pos = self._eval_question(prompt, seq, key,
                                      self._after_image(mode, prompt, bitmap.count))
        except BaseException:
            self.prefixes.forget()
            self._prefix = None
            if prompt is not None:
                prompt.close()
            bitmap.close()
            raise
        if not np.isfinite(engine.logits(-1)).all():
            self._prefix.close()
            self._prefix = None
            raise EngineError(f"{engine.name} gives no usable output (its first logits are "
                              "not numbers): the model file's weights are damaged")
        tail = prompt.tail_tokens()
        self._root = _Root(seq, pos, (), tail[-1] if tail else None)
        self._root_logits = True
        return PromptInfo(prompt.n_tokens, prompt.n_pos, len(earlier) - dropped, dropped,
                          prompt.image_tokens, (fitted[0].width, fitted[0].height))

    def _fitted(self, image: Images) -> tuple[PreparedImage, ...]:
        """The question's images as libmtmd gets them (each fitted to the family's size).

        Raises:
            StagewiseError: Several images for a family whose template takes one.
        """
        images = image_list(image)
        engine = self.engine
        if len(images) > 1 and not engine.adapter.several_images:
            raise StagewiseError(
                f"{engine.name} ({engine.family} family) takes one image per question: its "
                f"chat template has no place for {len(images)}")
        return tuple(engine.fit_image(each) for each in images)

    def _fit_thread(self, question: str, mode: StageMode, bitmap: Bitmap,
                    earlier: Sequence[tuple[str, str]], room: int
                    ) -> tuple[str, TokenizedPrompt, int]:
        """The prompt with as many of the ``earlier`` turns as leave ``room`` cells of the
        context for the answer, the oldest left out first; and how many were left out.

        The question itself is never left out: a prompt too long on its own fails when it
        is evaluated, saying so (:meth:`Engine.eval_prompt`).
        """
        engine = self.engine
        user = user_text(question, mode)
        for dropped in range(len(earlier) + 1):
            kept = list(earlier[dropped:])
            text = engine.chat_prompt(user, earlier=kept, images=bitmap.count)
            plain = (question.strip(), *(part.strip() for turn in kept for part in turn))
            prompt = engine.tokenize_prompt(text, bitmap, plain)
            if not kept or prompt.n_tokens + room <= engine.n_ctx:
                return text, prompt, dropped
            prompt.close()
        raise AssertionError("unreachable: the last try has no earlier turns")

    def _eval_question(self, prompt: TokenizedPrompt, seq: int, key: tuple[object, ...],
                       after: tuple[int, ...]) -> int:
        """Evaluate the prompt into ``seq`` (0): its part up to the image's end, and the
        part of ``after`` (the text every question has after the image) it starts with,
        as :meth:`PrefixKeeper.ensure` gets them there (kept, cached or encoded), then
        the question's own tokens; return the next position."""
        engine = self.engine
        tail = prompt.tail_tokens()
        if seq != PrefixKeeper.SEQ or not tail or not prompt.media_end:
            self.prefixes.forget()
            engine.clear()
            return engine.eval_prompt(prompt, seq)
        shared = common_start(tail[:-1], after)  # the question's last token gives logits
        self.prefixes.ensure(prompt, key, after=shared, save_now=False)
        start, rest = prompt.shared_pos + len(shared), tail[len(shared):]
        engine.eval_tokens([(seq, start, rest)])
        engine.stats.prompt_tokens += len(rest)
        return start + len(rest)

    def end(self) -> None:
        for st in self._streams:
            st.sampler.close()
        self._streams, self._last, self._in_flight = [], [], []
        self._keep_image()
        if self._prefix is not None:
            self._prefix.close()
            self._prefix = None
        self._pool.reset()

    def _keep_image(self) -> None:
        """Keep the question's image (its prompt up to the image's end) in sequence 0 for
        a next question about it, and write it to the disk cache if it was encoded for
        this question; forget everything else."""
        engine, prefix, kept = self.engine, self._prefix, self.prefixes
        if (not self.keep_image and not kept.unsaved) or kept.kept is None or prefix is None:
            kept.forget()
            engine.clear()
            return
        root, end = self._root.seq, kept.end_pos
        if root != 0:
            engine.remove_seq(0)
            engine.copy_seq(root, 0, 0, end)
        engine.remove_seq(0, end, -1)
        for seq in range(1, self._pool.size):
            engine.remove_seq(seq)
        kept.save()
        if not self.keep_image:
            kept.forget()
            engine.clear()

    # -- the chosen text ------------------------------------------------------------------

    def write(self, text: str) -> None:
        if text:
            self._extend(self.engine.tokenize(text))

    def keep(self, index: int) -> None:
        winner = self._last[index]
        for st in list(self._streams):
            if st is not winner:
                self._drop(st)
        self._streams.remove(winner)
        winner.sampler.close()
        self._release(self._root.seq)
        tail = winner.tokens[-1] if not winner.pending and winner.tokens else self._root.tail
        self._root = _Root(winner.seq, winner.pos, tuple(winner.pending), tail)
        self._last = []

    def discard(self) -> None:
        for st in list(self._streams):
            self._drop(st)
        self._last = []

    def mark(self) -> object:
        return self._root

    def rewind(self, mark: object) -> None:
        """The saved root's logits are gone: they are decoded anew when next needed."""
        assert isinstance(mark, _Root)
        if self._branch is not None and self._branch != mark.seq:
            self._release(self._branch)
            self._branch = None
        self._root, self._root_logits = mark, False

    def branch(self, pieces: Sequence[Piece]) -> None:
        seq = self._pool.take()
        self.engine.copy_seq(self._root.seq, seq, 0, self._root.pos)
        self._branch = seq
        self._root = _Root(seq, self._root.pos, self._root.pending, self._root.tail)
        for piece in pieces:
            tokens = piece.tokens if piece.tokens is not None else (
                self.engine.tokenize(piece.text) if piece.text else ())
            self._extend(tokens)

    def _extend(self, tokens: Sequence[int]) -> None:
        r = self._root
        self._root = _Root(r.seq, r.pos, (*r.pending, *tokens), r.tail)
        self._root_logits = False

    def _refresh_root(self) -> int:
        """Decode the root's pending tokens; return the output index of its last logits.

        With nothing pending (the winner ended its turn, or wrote nothing), the root's last
        logits have been overwritten by the candidates' and judges' decodes since: its
        last token is decoded again in place to bring them back.
        """
        r = self._root
        pending, pos = list(r.pending), r.pos
        if not pending:
            if self._root_logits:
                return -1  # the prompt's last logits are still in place
            if r.tail is None:
                raise EngineError("the prompt ends without a text token to continue from")
            pos -= 1
            self.engine.remove_seq(r.seq, pos, -1)
            pending = [r.tail]
        index = self.engine.eval_tokens([(r.seq, pos, pending)])
        self._root = _Root(r.seq, pos + len(pending), (), pending[-1])
        self._root_logits = True
        return index[r.seq]

    # -- candidates -----------------------------------------------------------------------

    def sample(self, request: SampleRequest) -> Iterator[Delta]:
        engine = self.engine
        index = self._refresh_root()
        streams = []
        for i in range(request.n):
            seq = self._pool.take()
            engine.copy_seq(self._root.seq, seq)
            sampler = Sampler(engine.vocab, request.sampling,
                              mix_seed(request.seed, request.segment, i), request.grammar)
            stream = Stream(seq, self._root.pos, i, sampler)
            if request.budget is not None:
                stream.parser = StageParser()
                stream.parser.feed(request.budget.answer)
                stream.stage_tokens = request.budget.spent
            streams.append(stream)
            self._streams.append(stream)
        self._last = streams
        yield from first_token(engine, streams, index, request)
        self._root_logits = False  # the candidates' decodes come next
        self._in_flight = streams
        yield from generate(engine, streams, request)
        self._in_flight = []
        return [st.sampled() for st in streams]

    def unfinished(self) -> list[Sampled]:
        return [st.sampled() for st in self._in_flight]

    # -- the judge's prompts --------------------------------------------------------------

    def judging(self) -> AbstractContextManager[JudgeSession]:
        return JudgeCache(self.engine, self._pool, self._image_prefix(), self._root.seq)

    def check(self, prompts: Sequence[Prompt]) -> list[str]:
        return check(self.engine, self._pool, prompts)

    def yes_probability(self, prompts: Sequence[Prompt]) -> list[float]:
        return yes_probability(self.engine, self._pool, self._image_prefix(), self._root.seq,
                               prompts)

    def choice_probabilities(self, prompts: Sequence[Prompt], answer_start: str,
                             choices: Sequence[str]) -> list[tuple[float, ...]]:
        return choice_probabilities(self.engine, self._pool, self._image_prefix(),
                                    self._root.seq, prompts, answer_start, choices)

    def _image_prefix(self) -> ImagePrefix:
        if self._prefix is None:
            raise EngineError("no question has begun")
        return self._prefix

    # -- sequences ------------------------------------------------------------------------

    def _release(self, seq: int) -> None:
        self.engine.remove_seq(seq)
        self._pool.give_back(seq)

    def _drop(self, st: Stream) -> None:
        st.sampler.close()
        self._release(st.seq)
        if st in self._streams:
            self._streams.remove(st)


_PROBES = ("What is in the picture?", "Is the second shape larger than the first one?")
"""Two questions whose prompts must agree up to the image for it to be prepared."""
