"""One question answered by two configurations, side by side, and where they diverged.

The configurations are written and read by :mod:`stagewise.models.reasoning.compare`
(``key=value`` pairs: ``"beam=4,select=verdict"``). :func:`run_comparison` answers the
question with each in turn through a :class:`~stagewise.models.session.Session`; two
configurations on the same model share one session, so that the image is encoded once
(the second answer finds it kept). The front ends (``stagewise ask --compare``, the
window's Compare…) open the sessions, record each side, and show the
:class:`~stagewise.models.reasoning.compare.Comparison`. Qt-free.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from stagewise.models.events import AnswerFinished, Event, SearchResult
from stagewise.models.reasoning.compare import (
    COMPARE_KEYS,
    SIDES,
    Comparison,
    Configuration,
    Divergence,
    divergence,
    not_run,
    parse_configuration,
    same_model,
)
from stagewise.models.reasoning.search_settings import SearchSettings

if TYPE_CHECKING:
    from stagewise.models.inference.images import Images
    from stagewise.models.session import Session

__all__ = ["COMPARE_KEYS", "SIDES", "Comparison", "Configuration", "Divergence", "divergence",
           "parse_configuration", "run_comparison", "same_model"]


def run_comparison(sessions: Sequence[Session], image: Images, question: str,
                   configurations: Sequence[Configuration],
                   cancel: threading.Event | None = None,
                   on_event: Callable[[int, Event], None] | None = None) -> Comparison:
    """Answer ``question`` with each configuration in turn, A then B.

    Args:
        sessions: The session for each side; the same session twice when the sides share
            a model (:func:`same_model`), so that its image is encoded once.
        image: The image (or images) asked about.
        question: The question.
        configurations: The two configurations.
        cancel: Set it to stop; the side answering ends cancelled, the other does not run.
        on_event: Told each event with its side's index (0 or 1), as it comes.

    Raises:
        StagewiseError: A configuration cannot run on its session (checked for both sides
            before either answers).
    """
    if len(sessions) != 2 or len(configurations) != 2:
        raise ValueError("a comparison has two sides")
    cancel = cancel or threading.Event()
    for session, config in zip(sessions, configurations, strict=True):
        session.search(config.search)  # a side that cannot run fails before any answer
    results: list[SearchResult] = []
    for side, (session, config) in enumerate(zip(sessions, configurations, strict=True)):
        result = _answer(session, image, question, config.search, cancel,
                         lambda event, side=side: on_event and on_event(side, event))
        results.append(result)
        if result.status == "cancelled":
            break
    if len(results) < 2:
        results.append(not_run(question, configurations[1].search))
    models = tuple(s.served_by if s.plan is None else s.plan.model.name for s in sessions)
    return Comparison(question, (configurations[0], configurations[1]),
                      (results[0], results[1]), (models[0], models[1]))


def _answer(session: Session, image: Images, question: str, search: SearchSettings,
            cancel: threading.Event, tell: Callable[[Event], object]) -> SearchResult:
    result = None
    for event in session.ask(image, question, search, cancel):
        tell(event)
        if isinstance(event, AnswerFinished):
            result = event.result
    assert result is not None
    return result
