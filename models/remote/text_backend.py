"""What every remote backend shares: the chosen text kept as text, candidates streamed
from parallel requests, the judge's prompts as more requests, and cancelling.

A server dialect (:mod:`.server_backend` for llama-server, :mod:`.openai_backend` for an
OpenAI-compatible server) says how to render prompts, how to ask for candidates, and how
to read what comes back, as :class:`Update` records.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from stagewise.models.errors import Cancelled, StagewiseError
from stagewise.models.events import Finish
from stagewise.models.inference.images import PreparedImage
from stagewise.models.inference.sampling_settings import mix_seed
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning import judge as judging
from stagewise.models.reasoning.search_backend import (
    BackendStats,
    Delta,
    Piece,
    Prompt,
    PromptInfo,
    ReplyRequest,
    Sampled,
    SampleRequest,
)
from stagewise.models.remote.http import Endpoint, ServerError, Stream
from stagewise.models.stages import TAG_WINDOW

__all__ = ["MAX_CANDIDATES", "Job", "RemoteBackend", "Requests", "Update"]

MAX_CANDIDATES = 64  # requests queue on the server beyond what it runs at once
MAX_TOKEN_CHARS = 256
"""More characters than any one token writes: a candidate's text is capped at this many
per token it may write."""
POLL_S = 0.05
"""How often a waiting search looks at its cancel event."""
JOIN_S = 0.5
"""How long ending a request's threads may take, all together, once they are closed."""

_Queue = queue.Queue["tuple[int, str] | BaseException | None"]
_watched = threading.local()  # set in parallel()'s threads, whose requests it watches


@dataclass(frozen=True)
class Update:
    """What one streamed event says about one candidate.

    Attributes:
        index: The candidate.
        text: New text (a stop word the server cut off included).
        tokens: New token ids, where the server says them.
        logprobs: The log-probabilities of the new tokens.
        finish: Why it ended, in the search's terms, when it did.
    """

    index: int
    text: str = ""
    tokens: tuple[int, ...] = ()
    logprobs: tuple[float, ...] = ()
    finish: Finish | None = None


@dataclass(frozen=True)
class Job:
    """One streamed request and the candidates it writes (one, or ``n`` at once)."""

    path: str
    body: dict[str, Any]
    indexes: tuple[int, ...]


class Requests:
    """A backend's open requests, so that a cancel closes them all at once (also those
    still waiting for the server's first byte)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[Stream] = set()
        self._cancel = threading.Event()

    def watch(self, cancel: threading.Event) -> None:
        """Close every request opened while ``cancel`` is set."""
        self._cancel = cancel

    def opened(self, stream: Stream) -> None:
        """Keep ``stream`` (the requests' ``opened`` callback); closed at once when the
        cancel is set already."""
        with self._lock:
            self._open = {s for s in self._open if not s.closed}
            self._open.add(stream)
        if self._cancel.is_set():
            stream.close()

    def close_all(self) -> None:
        with self._lock:
            streams, self._open = list(self._open), set()
        for stream in streams:
            stream.close()


@dataclass
class _Candidate:
    index: int
    text: str = ""
    tokens: list[int] = field(default_factory=list)
    logprob_sum: float = 0.0
    n_scored: int = 0
    finish: Finish | None = None
    received: int = 0  # tokens (or text events) the server sent

    def sampled(self) -> Sampled:
        mean = self.logprob_sum / self.n_scored if self.n_scored else float("-inf")
        written = len(self.tokens) or self.n_scored - (self.finish == "eog")
        return Sampled(self.index, self.text, tuple(self.tokens), written, self.n_scored, mean,
                       self.finish)


class RemoteBackend:
    """The server-independent half of a remote
    :class:`~stagewise.models.reasoning.search_backend.SearchBackend`."""

    def __init__(self, endpoint: Endpoint, stage_mode: StageMode) -> None:
        self.endpoint = endpoint
        self._stage_mode = stage_mode
        self._cancel = threading.Event()
        self._chosen = ""
        self._last: list[_Candidate] = []
        self._in_flight: list[_Candidate] = []
        self._requests = Requests()
        self.image_encodes = self.prompt_tokens = self.requests = 0

    # -- what a dialect provides ----------------------------------------------------------

    def start(self, image: PreparedImage, question: str, mode: StageMode) -> PromptInfo:
        """Prepare a question's prompt (and warm the server's cache with it)."""
        raise NotImplementedError

    def jobs(self, request: SampleRequest, chosen: str) -> list[Job]:
        """The streamed requests that write the request's candidates after ``chosen``."""
        raise NotImplementedError

    def updates(self, event: dict[str, Any], job: Job) -> list[Update]:
        """What one streamed event of ``job`` says."""
        raise NotImplementedError

    def greedy(self, prompt: Prompt, grammar: str, max_tokens: int, *, image: bool,
               reply: str = "") -> str:
        """A greedy answer to the user turn ``prompt`` under ``grammar``, continuing
        ``reply`` (the start of the answer) when one is given."""
        raise NotImplementedError

    def top_logprobs(self, prompt: Prompt, reply: str = "") -> dict[str, float]:
        """The log-probabilities of the likeliest first tokens of the answer (with the
        image), continuing ``reply`` when one is given, by their text, stripped."""
        raise NotImplementedError

    def sampled(self, prompt: Prompt, request: ReplyRequest, seed: int) -> str:
        """A reply to the user turn ``prompt`` (with the image unless the prompt is text
        only), sampled as ``request`` says, ending at its stop strings."""
        raise NotImplementedError

    # -- the seam -------------------------------------------------------------------------

    @property
    def stage_mode(self) -> StageMode:
        return self._stage_mode

    @property
    def max_candidates(self) -> int:
        return MAX_CANDIDATES

    def stats(self) -> BackendStats:
        return BackendStats(self.image_encodes, self.prompt_tokens, self.requests)

    def begin(self, image: PreparedImage, question: str, mode: StageMode,
              cancel: threading.Event, *, earlier: Sequence[tuple[str, str]] = (),
              room: int = 0) -> PromptInfo:
        if earlier:
            raise StagewiseError("follow-ups with the earlier questions in context need a "
                                 "model on this computer; ask it as a new question instead")
        self._cancel = cancel
        self._requests.watch(cancel)
        self._chosen, self._last, self._in_flight = "", [], []
        return self.start(image, question, mode)

    def end(self) -> None:
        self._last, self._in_flight = [], []

    def write(self, text: str) -> None:
        self._chosen += text

    def keep(self, index: int) -> None:
        self._chosen += self._last[index].text
        self._last = []

    def discard(self) -> None:
        self._last = []

    def mark(self) -> object:
        return self._chosen

    def rewind(self, mark: object) -> None:
        assert isinstance(mark, str)
        self._chosen = mark

    def branch(self, pieces: Sequence[Piece]) -> None:
        self._chosen += "".join(piece.text for piece in pieces)

    def sample(self, request: SampleRequest) -> Iterator[Delta]:
        candidates = [_Candidate(i) for i in range(request.n)]
        self._last = self._in_flight = candidates
        deltas: _Queue = queue.Queue()
        jobs = self.jobs(request, self._chosen)
        threads = [threading.Thread(target=self._run_job, daemon=True,
                                    args=(job, request, candidates, deltas),
                                    name=f"stagewise-remote-{k}") for k, job in enumerate(jobs)]
        for thread in threads:
            thread.start()
        try:
            yield from self._drain(deltas, len(jobs))
        finally:
            self._requests.close_all()
            _join(threads)
        self._in_flight = []
        return [c.sampled() for c in candidates]

    def unfinished(self) -> list[Sampled]:
        return [c.sampled() for c in self._in_flight]

    def judging(self) -> AbstractContextManager[_Judge]:
        return nullcontext(_Judge(self))

    @property
    def measures_entropy(self) -> bool:
        return False  # servers return a few log-probabilities a token, not distributions

    def check(self, prompts: Sequence[Prompt]) -> list[str]:
        return self.parallel([lambda p=p: self.greedy(p, judging.CHECK_GRAMMAR, 1, image=False)
                              for p in prompts])

    def yes_probability(self, prompts: Sequence[Prompt]) -> list[float]:
        return self.parallel([lambda p=p: _yes_share(self.top_logprobs(p)) for p in prompts])

    def choice_probabilities(self, prompts: Sequence[Prompt], answer_start: str,
                             choices: Sequence[str]) -> list[tuple[float, ...]]:
        tops = self.parallel([lambda p=p: self.top_logprobs(p, answer_start) for p in prompts])
        return [_shares(top, choices) for top in tops]

    # -- running requests -----------------------------------------------------------------

    def parallel(self, jobs: Sequence[Callable[[], Any]]) -> list[Any]:
        """Run blocking requests side by side; a cancel closes them and ends the wait at
        once. The first error any of them raised is raised here."""
        results: list[Any] = [None] * len(jobs)
        errors: list[BaseException] = []

        def run(i: int) -> None:
            _watched.on = True
            try:
                results[i] = jobs[i]()
            except BaseException as error:  # raised again in the caller's thread
                errors.append(error)

        threads = [threading.Thread(target=run, args=(i,), daemon=True)
                   for i in range(len(jobs))]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    if self._cancel.is_set():
                        raise Cancelled()
                    thread.join(timeout=POLL_S)
        finally:
            if self._cancel.is_set():
                self._requests.close_all()
        if errors:
            raise errors[0]
        return results

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One request, answered as a JSON object; a cancel closes it at once.

        Raises:
            Cancelled: The cancel was set.
            ServerError: The server failed or answered nonsense.
        """
        if self._cancel.is_set():
            raise Cancelled()
        self.requests += 1
        if getattr(_watched, "on", False):  # in one of parallel()'s threads: it watches
            return self.endpoint.post(path, body, opened=self._requests.opened)
        return self.parallel([lambda: self.endpoint.post(path, body,
                                                         opened=self._requests.opened)])[0]

    def _drain(self, deltas: _Queue, jobs: int) -> Iterator[Delta]:
        """The candidates' text as it arrives; a stream that sends no text for the stall
        timeout (whatever else it sends: comments, empty events, a drip) is given up."""
        ended = 0
        stall = self.endpoint.stall_timeout
        last = time.monotonic()
        while ended < jobs:
            if self._cancel.is_set():
                raise Cancelled()
            try:
                item = deltas.get(timeout=POLL_S)
            except queue.Empty:
                if time.monotonic() - last > stall:
                    raise ServerError(f"{self.endpoint.url} sent no text for {stall:g} s: is "
                                      "it overloaded?") from None
                continue
            if item is None:
                ended += 1
            elif isinstance(item, BaseException):
                raise item
            else:
                last = time.monotonic()
                yield Delta(*item)

    def _run_job(self, job: Job, request: SampleRequest, candidates: list[_Candidate],
                 deltas: _Queue) -> None:
        try:
            self.requests += 1
            with self.endpoint.stream(job.path, job.body,
                                      opened=self._requests.opened) as stream:
                for event in stream.events():
                    for update in self.updates(event, job):
                        _apply(update, candidates[update.index], request, deltas,
                               self.endpoint.url)
                    if all(candidates[i].finish is not None for i in job.indexes):
                        break
                # checked before the stream closes: closed here means closed from outside
                if any(candidates[i].finish is None for i in job.indexes) and \
                        not stream.closed:
                    raise ServerError(_cut_short(self.endpoint.url, stream.done))
        except BaseException as error:  # in the search's thread, raised again
            if not self._cancel.is_set():
                deltas.put(error)
        finally:
            deltas.put(None)


class _Judge:
    """A knockout's replies, each a request."""

    def __init__(self, backend: RemoteBackend) -> None:
        self.backend = backend

    def reply(self, prompts: Sequence[Prompt], request: ReplyRequest) -> list[str]:
        replies = self.backend.parallel([
            lambda p=p, k=k: self.backend.sampled(p, request, mix_seed(request.seed, k))
            for k, p in enumerate(prompts)])
        return [_kept(str(text), request) for text in replies]

    def choice_probabilities(self, prompts: Sequence[Prompt], answer_start: str,
                             choices: Sequence[str]) -> list[tuple[float, ...]]:
        return self.backend.choice_probabilities(prompts, answer_start, choices)


def _kept(text: str, request: ReplyRequest) -> str:
    """A reply up to its stop (a server's stop strings may leave the stop's tail out)."""
    end = request.stop(text)
    return text if end is None else text[:end]


def _apply(update: Update, c: _Candidate, request: SampleRequest, deltas: _Queue,
           where: str) -> None:
    """Add an update to its candidate. The stop test is the search's own: the server's stop
    words are exact strings, and a close tag written in another case ends a candidate here.

    Raises:
        ServerError: The server sent more tokens, or more text, than the request allows.
    """
    if c.finish is not None:
        return
    c.received += len(update.tokens) or len(update.logprobs) or (
        1 if update.text and update.finish is None else 0)
    if c.received > request.max_tokens or \
            len(c.text) + len(update.text) > request.max_tokens * MAX_TOKEN_CHARS:
        raise ServerError(f"{where} sent more than the {request.max_tokens} tokens asked for")
    c.tokens += update.tokens
    for logprob in update.logprobs:
        if math.isfinite(logprob):
            c.logprob_sum += logprob
            c.n_scored += 1
    before = len(c.text)
    c.text += update.text
    # a close tag can only complete in the newest text: look at the tail, not the whole
    start = max(0, before - TAG_WINDOW) if request.tail_stop else 0
    end = request.stop(c.text[start:])
    if end is not None:  # an OpenAI "stop" that wrote the close tag is the stop string
        c.text, c.finish = c.text[:start + end], "closed"
    elif update.finish is not None and c.text.endswith(request.stop_strings):
        # the server stopped at a stop string the search's own test does not take as the
        # end (a stage closed before it was opened): the candidate was cut, not closed
        c.finish = "length"
    elif update.finish is not None:  # the server ends a candidate at its token budget
        c.finish = update.finish
        if update.finish == "eog":
            c.n_scored += 1  # the end-of-turn token was sampled too
    if len(c.text) > before:
        deltas.put((c.index, c.text[before:]))


def _cut_short(url: str, done: bool) -> str:
    """Why a stream that ended before its candidates did is an error."""
    if done:
        return (f"{url} ended the stream before the answer was finished (no finish reason): "
                "is it a compatible server?")
    return f"{url} closed the connection mid-answer: did the server stop?"


def _join(threads: Sequence[threading.Thread]) -> None:
    """Wait for closed requests' threads, :data:`JOIN_S` at most in all (they are daemons,
    and end as their closed connections fail)."""
    deadline = time.monotonic() + JOIN_S
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))


def _shares(top: dict[str, float], choices: Sequence[str]) -> tuple[float, ...]:
    """The probabilities of ``choices`` among themselves, from a server's top log-probs (a
    choice missing from them counts as impossible; none found: all alike)."""
    found = [top.get(choice, -math.inf) for choice in choices]
    best = max(found)
    if best == -math.inf:
        return tuple(1 / len(choices) for _ in choices)
    weights = [math.exp(v - best) for v in found]
    return tuple(w / sum(weights) for w in weights)


def _yes_share(top: dict[str, float]) -> float:
    yes, no = top.get("Yes", -math.inf), top.get("No", -math.inf)
    if yes == no == -math.inf:
        return 0.5
    best = max(yes, no)
    return math.exp(yes - best) / (math.exp(yes - best) + math.exp(no - best))
