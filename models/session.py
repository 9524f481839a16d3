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
(:data:`~stagewise.models.reasoning.search_settings.MAX_BEAM` and the strategy that needs the most
sequences): with llama.cpp's unified KV cache more sequences cost no memory, and changing the
beam width or the strategy never reloads the model.
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
from stagewise.models.reasoning.search_settings import MAX_BEAM, SearchSettings

if TYPE_CHECKING:
    from stagewise.models.events import Event, RunWarning
    from stagewise.models.hardware import Fit, Hardware
    from stagewise.models.inference.engine import Engine
    from stagewise.models.inference.engine_settings import EngineSettings
    from stagewise.models.inference.images import Images
    from stagewise.models.inference.prefix_cache import PrefixCache
    from stagewise.models.reasoning.conversation import Turn
    from stagewise.models.reasoning.llama_prefix import PrefixKeeper
    from stagewise.models.reasoning.search import StageSearch
    from stagewise.models.reasoning.search_backend import PrefixReport, SearchBackend
    from stagewise.models.reasoning.selections import Selection, Verifier
    from stagewise.models.remote.server import ServerSettings

__all__ = ["DEFAULT_SCORER_KEY", "DEFAULT_SELECT_KEY", "LoadPlan", "Session", "plan",
           "sequences_reserved"]

DEFAULT_SELECT_KEY = "stagewise.search.select"
"""GGUF metadata: the selection measured best for this model on its validation data."""
DEFAULT_SCORER_KEY = "stagewise.search.scorer_model"
"""GGUF metadata: the file name, beside the model, of that selection's second model."""


def sequences_reserved() -> int:
    """Sequences every load reserves: enough for any beam width of any strategy there is."""
    from stagewise.models.reasoning.strategies import most_sequences

    return most_sequences(MAX_BEAM)


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
            -1 is auto). The plan's settings hold the sizes chosen: this is the one place
            an automatic context is given its size.
        search: The search it is for (its context need); the defaults if None.
        hardware: The machine; detected if None.

    Raises:
        StagewiseError: A setting is out of its range, the files cannot be found or read,
            or the load cannot fit this machine (the message says why and what would).
    """
    from stagewise.models.hardware import check_fit, detect_hardware
    from stagewise.models.library.defaults import resolve_pair

    engine.validate()
    pair = resolve_pair(model, mmproj)
    hardware = hardware or detect_hardware()
    settings = dataclasses.replace(engine, n_seq_max=max(engine.n_seq_max,
                                                         sequences_reserved()))
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
                 progress: Callable[[float], bool] | None = None, *,
                 prefix_cache: PrefixCache | None = None) -> None:
        """Load the plan's pair.

        Args:
            load: What to load.
            progress: Called with 0.0 to 1.0 while the weights load; False stops it.
            prefix_cache: Where encoded images are kept between runs
                (:class:`~stagewise.models.inference.prefix_cache.PrefixCache`); None keeps
                them only while the session lasts. The window and ``stagewise ask`` pass
                the user's cache; a batch over many images
                (:mod:`~stagewise.models.batch`) passes none, so as not to push the
                window's images out of it, and calls :meth:`prepare` for each image before
                its questions.

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
        backend = LlamaBackend(self.engine, keep_image=True, prefix_cache=prefix_cache)
        self.backend: SearchBackend = backend
        self._prefixes: PrefixKeeper | None = backend.prefixes
        self.served_by = "this computer"
        self._verifiers: dict[tuple[Path, str], tuple[Engine, Verifier]] = {}
        self._context_warnings: dict[SearchSettings, tuple[str, ...]] = {}

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
        session._verifiers = {}
        session._prefixes = None
        session._context_warnings = {}
        return session

    def use_prefix_cache(self, cache: PrefixCache | None) -> None:
        """Keep encoded images in ``cache`` from now on (None: only while the session
        lasts); a server keeps its own."""
        if self._prefixes is not None:
            self._prefixes.cache = cache

    def ask(self, image: Images, question: str, search: SearchSettings,
            cancel: threading.Event | None = None, *,
            earlier: Sequence[Turn] = ()) -> Iterator[Event]:
        """Answer ``question`` about ``image``; the last event is ``AnswerFinished``.

        Args:
            image: The image, or several (a tuple, in order) for a model whose chat
                template takes several in one question.
            question: The question.
            search: The search to answer with.
            cancel: Set it to stop the answer (what was chosen is kept).
            earlier: For a follow-up, the earlier turns of its thread about the same image
                (:func:`~stagewise.models.reasoning.conversation.turns_of`), oldest first:
                they go into the prompt after the image, which is not encoded again.

        The run's warnings (:meth:`warnings_for`) follow its first event and stay in its
        result.
        """
        return self.search(search).run(image, question, cancel, earlier=earlier,
                                       warnings=self.warnings_for(image, search))

    def warnings_for(self, image: Images, search: SearchSettings) -> list[RunWarning]:
        """What is known before a run that makes its answer less trustworthy: one answer or
        judgement of this search can run longer than the model was trained for (or the
        context is too small for it), or the built-in demo model is asked about a picture
        that is not one of its puzzles
        (:func:`~stagewise.models.library.demo_pictures.outside_demo`). None for a model
        another program serves: its context and model are its own."""
        from stagewise.models.events import RunWarning

        if self.plan is None:
            return []
        found = [RunWarning("context", text) for text in self._context_of(search)]
        if _is_demo(self.plan.model):
            from stagewise.models.inference.images import image_list
            from stagewise.models.library.demo_pictures import outside_demo

            outside = next((text for each in image_list(image)
                            if (text := outside_demo(each)) is not None), None)
            if outside is not None:
                found.append(RunWarning("outside", outside))
        return found

    def _context_of(self, search: SearchSettings) -> tuple[str, ...]:
        """The load's context warnings for ``search``, as the plan estimates them (the GGUF
        headers are read once per search settings)."""
        from stagewise.models.hardware.need import estimate_need

        load = self.plan
        assert load is not None
        if search not in self._context_warnings:
            try:
                need = estimate_need(load.model, load.mmproj, n_ctx=load.engine.n_ctx,
                                     search=search, flash_attn=load.engine.flash_attn != "off",
                                     n_batch=load.engine.n_batch)
            except StagewiseError:  # the file went since it was loaded: nothing to say
                return ()
            self._context_warnings[search] = tuple(
                text[:1].upper() + text[1:] + "." for text in need.warnings)
        return self._context_warnings[search]

    def prepare(self, image: Images, cancel: threading.Event | None = None,
                search: SearchSettings | None = None) -> PrefixReport:
        """Get ``image`` ready to be asked about before the question is known: the prompt
        up to the image's end (the same for any question) evaluated now, or read from the
        disk cache, so that :meth:`ask` then evaluates only the question's own tokens.

        Args:
            image: The image the next questions will be about.
            cancel: Set it to stop at once (another image arrived, say); the encode stops
                part-way and nothing of it is kept.
            search: The search the questions will use (its stage mode); the defaults if None.

        Returns:
            Where the prefix came from and how long it took; "not ready" with the reason
            where this model's prompt before the image depends on the question. On a
            server, its own prompt cache keeps what it evaluated.

        Raises:
            Cancelled: ``cancel`` was set.
            StagewiseError: The prompt could not be made or evaluated.
        """
        from stagewise.models.inference.images import image_list
        from stagewise.models.reasoning.search_backend import PrefixReport

        prepare = getattr(self.backend, "prepare", None)
        if prepare is None:
            return PrefixReport("", reason="this engine cannot prepare an image")
        if len(image_list(image)) > 1 and not getattr(self.backend, "several_images", False):
            return PrefixReport("", reason="this model takes one image per question")
        mode = (search.mode if search is not None else None) or self.backend.stage_mode
        return prepare(image, mode, cancel or threading.Event())

    def check_images(self, count: int) -> None:
        """Refuse ``count`` images in one question where this model takes one, before
        anything is asked or recorded.

        Raises:
            StagewiseError: It takes one; one line.
        """
        from stagewise.models.reasoning.search import check_several_images

        check_several_images(self.backend, count)

    def search(self, search: SearchSettings) -> StageSearch:
        """A search with these settings on this session's model (and its second model,
        for a selection that scores with one). With no selection asked for, the model's
        own measured default is used where it has one (:meth:`settled`).

        Raises:
            StagewiseError: The settings cannot run here (an unknown strategy, a beam the
                engine cannot hold, a selection this server cannot do, no second model).
        """
        from stagewise.models.reasoning.search import StageSearch

        search = self.settled(search)
        return StageSearch(self.backend, search, verifier=self.verifier(search))

    def settled(self, search: SearchSettings) -> SearchSettings:
        """``search`` with the model's own default selection (and that selection's second
        model) when none is asked for and the strategy can use it.

        A model carries its default, measured on its validation data, in its GGUF metadata:
        :data:`DEFAULT_SELECT_KEY` names the selection and :data:`DEFAULT_SCORER_KEY` a
        second model's file beside it, for a selection that scores with one.
        """
        from stagewise.models.reasoning.selections import SELECTIONS
        from stagewise.models.reasoning.strategies import STRATEGIES

        if search.select is not None or self.engine is None or self.plan is None:
            return search
        chosen_by = SELECTIONS.find(self.engine.meta(DEFAULT_SELECT_KEY))
        strategy = STRATEGIES.find(search.strategy)
        if chosen_by is None or strategy is None or (strategy.pointwise_only
                                                     and chosen_by.pairwise):
            return search
        scorer = search.scorer_model
        if chosen_by.needs_verifier and scorer is None:
            name = self.engine.meta(DEFAULT_SCORER_KEY)
            scorer = self.plan.model.parent / name if name else None
            if scorer is None or not scorer.is_file():
                return search  # the default's second model is not there: keep the fallback
        return dataclasses.replace(search, select=chosen_by.name, scorer_model=scorer)

    def verifier(self, search: SearchSettings) -> Verifier | None:
        """The second model that scores candidates for these settings, loaded once per
        session through its own load plan (fit check included); None when the selection
        needs none.

        Raises:
            StagewiseError: The selection needs a second model and none was given, or it
                cannot be loaded or does not fit this machine.
        """
        from stagewise.models.reasoning.selections import selection
        from stagewise.models.reasoning.strategies import selection_name

        name = selection_name(search)
        if not selection(name).needs_verifier:
            return None
        model = search.scorer_model
        if model is None:
            raise StagewiseError(f"the {name} selection needs a second model "
                                 "(--scorer-model GGUF)")
        key = (model, name)
        if key not in self._verifiers:
            self._verifiers[key] = _load_verifier(model, self.plan, selection(name))
        return self._verifiers[key][1]

    def close(self) -> None:
        """Free the engine and any second model; safe to call twice."""
        for engine, verifier in self._verifiers.values():
            verifier.finish()
            engine.close()
        self._verifiers.clear()
        if self.engine is not None:
            self.engine.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_demo(model: Path) -> bool:
    """Whether ``model`` is the built-in demo model."""
    from stagewise.models.library.demo import demo_pair

    demo = demo_pair()
    try:
        return demo is not None and model.resolve() == demo.model.resolve()
    except OSError:
        return False


def _load_verifier(model: Path, main: LoadPlan | None, scorer: Selection
                   ) -> tuple[Engine, Verifier]:
    """Load a second model through its own plan (the threads the main model uses, the
    automatic context) and make the selection's scorer on it."""
    from stagewise.models.inference.engine import Engine
    from stagewise.models.inference.engine_settings import EngineSettings

    threads = main.engine.threads if main is not None else None
    load = plan(model, None, EngineSettings(threads=threads))
    engine = Engine(load.model, load.mmproj, load.engine)
    try:
        return engine, scorer.verifier_for(engine)
    except BaseException:
        engine.close()
        raise
