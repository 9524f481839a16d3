"""The seam between the search and what runs the model, at the level of stages.

The search (:mod:`stagewise.models.reasoning.search`) decides what to generate, how to choose and
what to tell the user; a :class:`SearchBackend` generates. The seam is drawn where an
OpenAI-compatible server could stand behind it as well as llama.cpp in this process
(:class:`stagewise.models.reasoning.llama_backend.LlamaBackend`): every call is "continue the chosen
text", "score these prompts" or "move the chosen text", never a token or a cache cell.

* :meth:`~SearchBackend.begin` evaluates the question's prompt, image included, once;
* :meth:`~SearchBackend.sample` writes ``n`` candidates continuing the chosen text, each up
  to a stop, streaming their text and returning them with their log-probabilities;
* :meth:`~SearchBackend.keep` makes one candidate part of the chosen text;
  :meth:`~SearchBackend.write` appends text the search writes itself (tags);
* :meth:`~SearchBackend.mark`, :meth:`~SearchBackend.rewind` and
  :meth:`~SearchBackend.branch` let retrace go back to an earlier point and continue
  from text it chose before;
* :meth:`~SearchBackend.judging` (free replies, such as a judge's verdicts),
  :meth:`~SearchBackend.check` (a greedy Yes or No, text only),
  :meth:`~SearchBackend.yes_probability` and :meth:`~SearchBackend.choice_probabilities`
  (the probabilities of a few answers' first tokens) are the selections' prompts, asked about
  the image unless a prompt says it is text only;
* the cancel event given to :meth:`~SearchBackend.begin` stops any call with
  :class:`~stagewise.models.errors.Cancelled`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from stagewise.models.events import Finish
from stagewise.models.inference.images import PreparedImage
from stagewise.models.inference.sampling_settings import SamplingSettings
from stagewise.models.inference.stage_mode import StageMode

__all__ = ["PREFIX_ORIGINS", "BackendStats", "Delta", "JudgeSession", "Piece", "PrefixReport",
           "Prompt", "PromptInfo", "ReplyRequest", "SampleRequest", "Sampled", "SearchBackend",
           "StageBudget"]


@dataclass(frozen=True)
class PromptInfo:
    """The question's prompt, evaluated: its tokens and positions (images count as many
    tokens as they have embeddings, and as few positions as their M-RoPE grid spans), and,
    for a follow-up, the earlier turns it holds and those left out to fit the context; the
    tokens the image took and its size as sent (after any downscaling; 0 when unknown, as
    on a server)."""

    n_tokens: int
    n_pos: int
    earlier_turns: int = 0
    dropped_turns: int = 0
    image_tokens: int = 0
    image_size: tuple[int, int] = (0, 0)


PREFIX_ORIGINS = ("encoded", "cache", "memory")
"""Where a question's prompt up to its image's end came from: encoded now, read from the
disk cache, or already in the engine (kept from an earlier question, or prepared when the
image arrived; on a server, its own prompt cache)."""


@dataclass(frozen=True)
class PrefixReport:
    """How an image became ready to ask about.

    Attributes:
        origin: One of :data:`PREFIX_ORIGINS`, or "" when nothing was prepared (see
            ``reason``).
        seconds: Seconds it took now (encoding, or reading the cache; ~0 from memory).
        encode_s: Seconds the encode took when it was done (now, or when the cache entry
            or the kept prefix was made).
        saved: The encode was written to the disk cache.
        reason: Why nothing was prepared ("" when something was).
    """

    origin: str
    seconds: float = 0.0
    encode_s: float = 0.0
    saved: bool = False
    reason: str = ""

    @property
    def ready(self) -> bool:
        return bool(self.origin)


@dataclass(frozen=True)
class BackendStats:
    """Work done since the backend was created; the search reports differences."""

    image_encodes: int = 0
    prompt_tokens: int = 0
    decode_steps: int = 0
    encode_s: float = 0.0  # spent evaluating prompts up to their image's end
    cache_loads: int = 0  # image prefixes read from the disk cache instead
    cache_load_s: float = 0.0


@dataclass(frozen=True)
class StageBudget:
    """A whole answer's cap on each stage: a stage that writes ``limit`` tokens is closed
    and the next one opened for it.

    Attributes:
        limit: Tokens a stage may write.
        answer: The chosen text the candidates continue (which stage is open).
        spent: Tokens the chosen text has already written in the open stage.
    """

    limit: int
    answer: str
    spent: int


@dataclass(frozen=True)
class SampleRequest:
    """``n`` candidates continuing the chosen text.

    Attributes:
        n: How many candidates.
        seed: The run's seed; with ``segment`` and each candidate's index it seeds that
            candidate's sampler.
        segment: The segment's number in the run.
        sampling: Temperature, top-k, top-p.
        grammar: A GBNF grammar the candidates follow (prompted mode), or None.
        stop: Where a candidate's text ends: the length of the text kept, or None while it
            goes on.
        stop_strings: ``stop`` as literal strings, for backends that only stop on strings.
        tail_stop: ``stop`` completes only in a candidate's newest piece (a close tag), so
            only the text's end needs looking at.
        max_tokens: Tokens a candidate may write.
        budget: For a whole answer, the cap on each stage inside it.
    """

    n: int
    seed: int
    segment: int
    sampling: SamplingSettings
    grammar: str | None
    stop: Callable[[str], int | None]
    stop_strings: tuple[str, ...]
    tail_stop: bool
    max_tokens: int
    budget: StageBudget | None = None


@dataclass(frozen=True)
class Delta:
    """New text of one candidate, as it streams."""

    index: int
    text: str


@dataclass(frozen=True)
class Sampled:
    """One candidate, finished (or cut short by a cancel: ``finish`` None).

    Attributes:
        index: Its place in the request, from 0.
        text: What it wrote, tags the backend forced in included.
        tokens: Its token ids where the backend knows them (empty otherwise).
        n_tokens: How many tokens it wrote (an end-of-turn token not counted).
        n_sampled: How many tokens were sampled for it (an end-of-turn token counted).
        mean_logprob: The mean log-probability of the sampled tokens.
        finish: Why it ended, or None when it was cut short.
        stage_tokens: In a whole answer, the tokens it wrote in the stage it ended in.
        mean_entropy: The mean entropy (nats) of the model's distributions its tokens were
            sampled from (temperature 1), where the backend sees whole distributions.
    """

    index: int
    text: str
    tokens: tuple[int, ...]
    n_tokens: int
    n_sampled: int
    mean_logprob: float
    finish: Finish | None
    stage_tokens: int = 0
    mean_entropy: float | None = None


@dataclass(frozen=True)
class Piece:
    """Text to continue from, with the tokens that spelled it when they are known (a
    candidate's own tokens: tokenizing its text again may split it differently)."""

    text: str
    tokens: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Prompt:
    """A user turn to ask the model, and the parts of it that are plain text (the
    question, candidates) which must never be read as special tokens.

    Attributes:
        text: The user turn's text.
        plain: Its parts that are plain text.
        image: The image goes before the text (False: a text-only prompt).
    """

    text: str
    plain: tuple[str, ...] = ()
    image: bool = True


@dataclass(frozen=True)
class ReplyRequest:
    """How replies to prompts are written.

    Attributes:
        max_tokens: Tokens a reply may write.
        sampling: Temperature, top-k, top-p (greedy with temperature 0).
        seed: With each prompt's index it seeds that reply's sampler.
        stop: Where a reply's text ends: the length kept, or None while it goes on.
        stop_strings: ``stop`` as literal strings, for backends that only stop on strings.
    """

    max_tokens: int
    sampling: SamplingSettings
    seed: int
    stop: Callable[[str], int | None]
    stop_strings: tuple[str, ...] = ()


class JudgeSession(Protocol):
    """The replies of one knockout: prompts asked in a later round may reuse what an
    earlier round's prompts left in the cache."""

    def reply(self, prompts: Sequence[Prompt], request: ReplyRequest) -> list[str]:
        """Each prompt's reply, written together."""
        ...

    def choice_probabilities(self, prompts: Sequence[Prompt], answer_start: str,
                             choices: Sequence[str]) -> list[tuple[float, ...]]:
        """As :meth:`SearchBackend.choice_probabilities`, where a later round's prompts may
        reuse what this round's left in the cache."""
        ...


class SearchBackend(Protocol):
    """What the search needs of a model, one question at a time."""

    @property
    def stage_mode(self) -> StageMode:
        """Whether the model writes its own stage tags (native) or is prompted."""
        ...

    @property
    def max_candidates(self) -> int:
        """How many candidates (and judge prompts) can be alive at once."""
        ...

    def stats(self) -> BackendStats:
        """Work done so far."""
        ...

    def begin(self, image: PreparedImage, question: str, mode: StageMode,
              cancel: threading.Event, *, earlier: Sequence[tuple[str, str]] = (),
              room: int = 0) -> PromptInfo:
        """Start a question: evaluate its prompt with the image, once.

        ``earlier`` turns (question, answer; oldest first) go before the question, the
        image in the first one; the oldest are left out while the prompt would leave fewer
        than ``room`` cells of the context for the answer. Backends that cannot hold a
        conversation raise StagewiseError when given earlier turns.
        """
        ...

    def end(self) -> None:
        """Free everything the question held; called once per :meth:`begin`, always."""
        ...

    def write(self, text: str) -> None:
        """Append text the search writes itself (a tag) to the chosen text."""
        ...

    def sample(self, request: SampleRequest) -> Iterator[Delta]:
        """Write ``request.n`` candidates; yields their text as it streams and returns
        (as the generator's value) the :class:`Sampled` candidates, in order."""
        ...

    def unfinished(self) -> list[Sampled]:
        """The candidates of a :meth:`sample` that a cancel cut short, as they stood."""
        ...

    def keep(self, index: int) -> None:
        """Make candidate ``index`` of the last :meth:`sample` part of the chosen text and
        drop the others."""
        ...

    def discard(self) -> None:
        """Drop every candidate of the last :meth:`sample`."""
        ...

    def mark(self) -> object:
        """Where the chosen text ends now, to :meth:`rewind` to."""
        ...

    def rewind(self, mark: object) -> None:
        """Make the chosen text what it was at ``mark`` (dropping any branch)."""
        ...

    def branch(self, pieces: Sequence[Piece]) -> None:
        """Continue from the chosen text followed by ``pieces``, keeping the chosen text
        itself to :meth:`rewind` to."""
        ...

    @property
    def measures_entropy(self) -> bool:
        """Whether sampled candidates carry their mean entropy (the backend sees whole
        distributions)."""
        ...

    def judging(self) -> AbstractContextManager[JudgeSession]:
        """A knockout's replies; what they cached is freed when it closes."""
        ...

    def check(self, prompts: Sequence[Prompt]) -> list[str]:
        """Ask each prompt, text only, for a greedy "Yes" or "No"."""
        ...

    def yes_probability(self, prompts: Sequence[Prompt]) -> list[float]:
        """The probability of "Yes" (against "No") as the answer to each prompt, with the
        image."""
        ...

    def choice_probabilities(self, prompts: Sequence[Prompt], answer_start: str,
                             choices: Sequence[str]) -> list[tuple[float, ...]]:
        """For each prompt, with the image, and its answer begun with ``answer_start``: the
        probability of each of ``choices`` as the next token, among them only (they sum
        to 1)."""
        ...
