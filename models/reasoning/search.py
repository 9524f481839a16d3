"""A search over a :class:`SearchBackend`: one question's run, any strategy, any selection.

The strategy (:mod:`stagewise.models.reasoning.strategies`) decides what is generated,
segment by segment: a stage (stage-level beam search), a sentence (sentence-level beam
search) or the whole answer (best-of-N), or a search that goes back (retrace). For each
segment the backend writes N candidates continuing the chosen text, and the selection
(:mod:`stagewise.models.reasoning.selections`) chooses one: by mean log-probability, by the
model's own check, by a second model, or by the model judging pairs in a knockout.

:meth:`StageSearch.run` yields :mod:`stagewise.models.events` and ends with one
:class:`~stagewise.models.events.AnswerFinished`, also when cancelled. On llama.cpp in this
process (:class:`~stagewise.models.reasoning.llama_backend.LlamaBackend`) the image and
question are evaluated once per question and candidates decode together.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace

from stagewise.models.errors import Cancelled, StagewiseError
from stagewise.models.events import (
    AnswerFinished,
    Event,
    PromptEvaluated,
    RunStarted,
    RunWarning,
)
from stagewise.models.inference.images import Images, image_list
from stagewise.models.reasoning.conversation import Turn, answer_room
from stagewise.models.reasoning.search_backend import PromptInfo, SearchBackend
from stagewise.models.reasoning.search_run import RunRecord
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.reasoning.search_steps import SearchSteps
from stagewise.models.reasoning.selections import Selection, Verifier, selection
from stagewise.models.reasoning.strategies import Strategy, selection_name, strategy

__all__ = ["StageSearch", "check_several_images"]


class StageSearch:
    """Runs searches on a backend, one question at a time (not thread-safe)."""

    def __init__(self, backend: SearchBackend, settings: SearchSettings | None = None,
                 *, verifier: Verifier | None = None) -> None:
        """Check the settings against the backend.

        Args:
            backend: What runs the model (a session's, :class:`~stagewise.models.session.
                Session`).
            settings: The search's parameters.
            verifier: The second model of a selection that scores with one, loaded once
                by the caller (:meth:`stagewise.models.session.Session.verifier`).

        Raises:
            StagewiseError: A setting is out of range, the strategy or selection is unknown
                or cannot run here, or the search needs more sequences than the backend has.
        """
        self.backend = backend
        s = settings or SearchSettings()
        self.strategy: Strategy = strategy(s.strategy)
        self.settings = s = replace(s, select=selection_name(s))  # the default made explicit
        self.selection: Selection = selection(s.select)
        self.verifier = verifier
        _check_settings(s, self.strategy, self.selection, backend, verifier)
        self.mode = s.mode or self.backend.stage_mode
        self.run_record: RunRecord | None = None

    def run(self, image: Images, question: str,
            cancel: threading.Event | None = None, *,
            earlier: Sequence[Turn] = (), warnings: Sequence[RunWarning] = ()
            ) -> Iterator[Event]:
        """Answer ``question`` about ``image``, yielding events.

        The last event is :class:`AnswerFinished`, also when ``cancel`` is set mid-run (its
        result's status says "cancelled" and keeps what was chosen so far).

        A follow-up has the ``earlier`` turns of its thread (oldest first) in its prompt
        (:mod:`stagewise.models.reasoning.conversation`); the oldest are left out when the
        answer would not fit the context otherwise, and the prompt's event and the
        result's timings say how many were kept and left out.

        Several images (a tuple) go into one prompt, each encoded once, where the backend
        takes several (a local model whose family's template does).

        ``warnings`` (what the caller knows about the run before it starts, such as a
        context longer than the model was trained for) follow :class:`RunStarted` as
        events, and the result keeps them.

        Raises:
            EngineError: The backend failed (the context is full, say); nothing is
                yielded after it.
            StagewiseError: Several images where the backend or the selection's second
                model takes one (before anything is yielded).
        """
        s, backend = self.settings, self.backend
        _check_images(image_list(image), backend, self.verifier if self.selection.needs_verifier
                      else None, s)
        run = self.run_record = RunRecord(question, backend.stats())
        yield RunStarted(question, s.strategy, s.beam, s.select, self.mode.value, s.seed)
        run.warnings = list(warnings)
        yield from warnings
        status = "finished"
        verifier = self.verifier if self.selection.needs_verifier else None
        try:
            info = self._begin(image, question, cancel or threading.Event(), earlier)
            run.prompt_s = time.perf_counter() - run.start
            run.earlier_turns, run.dropped_turns = info.earlier_turns, info.dropped_turns
            run.image_tokens, run.image_size = info.image_tokens, info.image_size
            yield PromptEvaluated(info.n_tokens, info.n_pos, run.prompt_s,
                                  info.earlier_turns, info.dropped_turns, info.image_tokens,
                                  info.image_size)
            if verifier is not None:
                verifier.start(image, question)
            steps = SearchSteps(backend, s, self.mode, run, self.selection, verifier)
            yield from self.strategy.run(steps)
        except Cancelled:
            status = "cancelled"
            if unfinished := backend.unfinished():  # keep what the candidates had written
                run.add_candidates(run.unit, unfinished, counted=False)
        finally:
            if verifier is not None:
                verifier.finish()
            backend.end()
        yield AnswerFinished(run.result(s, self.mode.value, status, backend.stats()))

    def _begin(self, image: Images, question: str, cancel: threading.Event,
               earlier: Sequence[Turn]) -> PromptInfo:
        """The backend's :meth:`~SearchBackend.begin`; a follow-up's turns, and the room
        its answer needs, are passed only when there are earlier turns."""
        if not earlier:
            return self.backend.begin(image, question, self.mode, cancel)
        return self.backend.begin(image, question, self.mode, cancel,
                                  earlier=tuple(earlier), room=answer_room(self.settings))


def check_several_images(backend: SearchBackend, count: int) -> None:
    """Refuse ``count`` images in one question where the backend takes one.

    Raises:
        StagewiseError: It takes one (a model whose family's chat template has no place for
            several, or a server); one line.
    """
    if count > 1 and not getattr(backend, "several_images", False):
        raise StagewiseError(f"this model takes one image per question, not {count}: its "
                             "chat template has no place for several (Qwen2.5-VL, Qwen3-VL, "
                             "Gemma 3, InternVL and SmolVLM in this program do)")


def _check_images(images: Sequence[object], backend: SearchBackend, verifier: Verifier | None,
                  s: SearchSettings) -> None:
    """Refuse several images where they cannot go (one line, before the run starts)."""
    check_several_images(backend, len(images))
    if len(images) > 1 and verifier is not None:
        raise StagewiseError(f"the {s.select} selection's second model scores one image: "
                             "ask about one image, or choose another selection")


def _check_settings(s: SearchSettings, strategy: Strategy, selection: Selection,
                    backend: SearchBackend, verifier: Verifier | None) -> None:
    s.validate()
    strategy.check(s, selection)
    needed = strategy.sequences(s.beam)
    if needed > backend.max_candidates:
        raise StagewiseError(
            f"{s.strategy} search with beam width {s.beam} needs {needed} sequences, but "
            f"the engine was loaded with n_seq_max={backend.max_candidates}")
    choosing = s.beam > 1 or not strategy.uses_beam
    if not choosing:
        return
    reason = selection.unavailable(backend)
    if reason:
        raise StagewiseError(f"the {selection.name} selection cannot run here: {reason}")
    if selection.needs_verifier and verifier is None:
        raise StagewiseError(f"the {selection.name} selection needs a second model "
                             "(--scorer-model)")
