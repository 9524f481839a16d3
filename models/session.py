"""One way to answer a question: plan a load, load it, ask.

Every front end (the window's engine thread, ``stagewise ask``, ``stagewise eval``, the
recipes' evaluation) goes through here, so a fix to how a model is chosen, fitted or asked
reaches all of them:

* :func:`plan` is pure given its inputs: it resolves the model pair, checks that the load
  fits the machine (refusing it, with the reason, when it cannot), picks the GPU layers
  when they are on auto, and sizes the context's sequences;
* :class:`Session` owns the engine loaded from a plan and answers questions with the
  search, yielding the core's frozen events.

Sequences are sized for the widest search there is
(:data:`~stagewise.models.reasoning.search_settings.MAX_BEAM` and retrace): with llama.cpp's unified
KV cache more sequences cost no memory, and changing the beam width never reloads the model.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stagewise.models.errors import StagewiseError
from stagewise.models.inference.engine_settings import AUTO_CTX
from stagewise.models.reasoning.search_settings import MAX_BEAM, SearchSettings, sequences_needed

if TYPE_CHECKING:
    from stagewise.models.events import Event
    from stagewise.models.hardware import Fit, Hardware
    from stagewise.models.inference.engine import Engine
    from stagewise.models.inference.engine_settings import EngineSettings
    from stagewise.models.inference.images import PreparedImage
    from stagewise.models.reasoning.conversation import Turn
    from stagewise.models.reasoning.retrace import ModelScorer
    from stagewise.models.reasoning.search_backend import SearchBackend
    from stagewise.models.remote.server import ServerSettings

__all__ = ["SEQUENCES", "LoadPlan", "Session", "plan"]

SEQUENCES = max(sequences_needed(MAX_BEAM), sequences_needed(1, "retrace"))
"""Sequences every load reserves: enough for any beam width and for retrace."""


@dataclass(frozen=True)
class LoadPlan:
    """What to load and how.

    Attributes:
        model: The text model GGUF.
        mmproj: Its projector GGUF.
        note: A note for the user about the choice ("" for a model the user chose).
        engine: The engine settings to load with: fitted GPU layers, sequences.
        fit: The hardware plan the settings came from; its ``warnings`` are for the
            front end to show or log.
    """

    model: Path
    mmproj: Path
    note: str
    engine: EngineSettings
    fit: Fit

    @property
    def key(self) -> tuple[Path, Path, EngineSettings]:
        """Two plans with the same key load the same engine."""
        return self.model, self.mmproj, self.engine


def plan(model: Path | None, mmproj: Path | None, engine: EngineSettings,
         search: SearchSettings | None = None, *, hardware: Hardware | None = None
         ) -> LoadPlan:
    """Decide a load.

    Args:
        model: The text model: a GGUF, a library id, or None for the built-in model.
        mmproj: Its projector; None finds the one beside the model.
        engine: The engine settings asked for (context: 0 is auto; threads; GPU layers:
            -1 is auto). The plan's settings hold the sizes chosen.
        search: The search it is for (its context need); the defaults if None.
        hardware: The machine; detected if None.

    Raises:
        StagewiseError: The files cannot be found or read, or the load cannot fit this
            machine (the message says why and what would).
    """
    from stagewise.models.hardware import check_fit, detect_hardware
    from stagewise.models.library.defaults import resolve_pair

    pair = resolve_pair(model, mmproj)
    hardware = hardware or detect_hardware()
    settings = dataclasses.replace(engine, n_seq_max=max(engine.n_seq_max, SEQUENCES))
    fit = check_fit(pair.model, pair.mmproj, settings, search, hardware=hardware)
    if not fit.fits:
        raise StagewiseError(f"{pair.model.name} does not fit this machine: {fit.message}")
    if settings.gpu_layers == -1 and hardware.gpu_offload:
        settings = dataclasses.replace(settings, gpu_layers=fit.gpu_layers)
    if settings.n_ctx == AUTO_CTX and fit.need is not None:  # the size the fit was planned at
        settings = dataclasses.replace(settings, n_ctx=fit.need.n_ctx)
    return LoadPlan(pair.model, pair.mmproj, pair.note, settings, fit)


class Session:
    """A model answering questions one at a time: loaded here from a plan, or served by
    another program (:meth:`connect`).

    Use as a context manager, or call :meth:`close`.

    Attributes:
        plan: The load, for a model in this process (None for a server).
        engine: The in-process engine (None for a server).
        backend: What the search runs on.
        served_by: Who answers, as the front ends name it ("this computer", or
            "llama-server at http://…").
    """

    def __init__(self, load: LoadPlan,
                 progress: Callable[[float], bool] | None = None) -> None:
        """Load the plan's pair.

        Raises:
            ModelFileError: A file is missing, truncated or does not match the other.
            EngineError: llama.cpp refused a file.
            Cancelled: ``progress`` returned False.
        """
        from stagewise.models.inference.engine import Engine
        from stagewise.models.reasoning.llama_backend import LlamaBackend

        self.plan: LoadPlan | None = load
        self.engine: Engine | None = Engine(load.model, load.mmproj, load.engine,
                                            progress=progress)
        self.backend: SearchBackend = LlamaBackend(self.engine, keep_image=True)
        self.served_by = "this computer"
        self._scorers: dict[Path, ModelScorer] = {}

    @classmethod
    def connect(cls, server: ServerSettings, api_key: str = "") -> Session:
        """A session on a model another program serves.

        Raises:
            ServerError: The server cannot be reached, refuses the key, or takes no images.
        """
        from stagewise.models.remote.server import connect

        session = cls.__new__(cls)
        session.plan, session.engine = None, None
        session.backend = connect(server, api_key)
        session.served_by = server.describe()
        session._scorers = {}
        return session

    def ask(self, image: PreparedImage, question: str, search: SearchSettings,
            cancel: threading.Event | None = None, *,
            earlier: Sequence[Turn] = ()) -> Iterator[Event]:
        """Answer ``question`` about ``image``; the last event is ``AnswerFinished``.

        Args:
            image: The image.
            question: The question.
            search: The search to answer with.
            cancel: Set it to stop the answer (what was chosen is kept).
            earlier: For a follow-up, the earlier turns of its thread about the same image
                (:func:`~stagewise.models.reasoning.conversation.turns_of`), oldest first:
                they go into the prompt after the image, which is not encoded again.
        """
        from stagewise.models.reasoning.search import StageSearch

        return StageSearch(self.backend, search, scorer_model=self.scorer(search)).run(
            image, question, cancel, earlier=earlier)

    def scorer(self, search: SearchSettings) -> ModelScorer | None:
        """Retrace's second model for these settings, loaded once per session; None when
        the search needs none.

        Raises:
            StagewiseError: The "model" scorer was asked for without a model.
        """
        from stagewise.models.reasoning.retrace import ModelScorer

        if search.strategy != "retrace" or search.retrace_scorer != "model":
            return None
        model = search.scorer_model
        if model is None:
            raise StagewiseError("the model scorer needs a second model (--scorer-model)")
        if model not in self._scorers:
            self._scorers[model] = ModelScorer(model)
        return self._scorers[model]

    def close(self) -> None:
        """Free the engine and any scorer model; safe to call twice."""
        for scorer in self._scorers.values():
            scorer.close()
        self._scorers.clear()
        if self.engine is not None:
            self.engine.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
