"""Follow-ups of an evaluation question, asked as the window asks them.

After a strategy has answered a question, each of the question's follow-ups
(:attr:`~stagewise.models.evaluation.data.EvalItem.follow_ups`) is asked in turn with the
same strategy, with the earlier questions and the conclusions the strategy gave them in the
prompt (:func:`~stagewise.models.reasoning.conversation.turns_of`), about the same image.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from stagewise.models.errors import StagewiseError
from stagewise.models.evaluation.data import EvalItem
from stagewise.models.evaluation.results import FollowUpResult
from stagewise.models.evaluation.scoring import is_correct
from stagewise.models.events import AnswerFinished, SearchResult
from stagewise.models.reasoning.conversation import turns_of
from stagewise.models.reasoning.search_settings import SearchSettings

if TYPE_CHECKING:
    from stagewise.models.inference.images import PreparedImage
    from stagewise.models.session import Session

__all__ = ["ask_follow_ups"]


def ask_follow_ups(session: Session, item: EvalItem, settings: SearchSettings,
                   image: PreparedImage, first: SearchResult, cancel: threading.Event
                   ) -> tuple[FollowUpResult, ...] | None:
    """Ask ``item``'s follow-ups after ``first`` (the strategy's answer to its question).

    Returns:
        One result per follow-up (empty when it has none); None when cancelled meanwhile. A
        follow-up that fails counts as wrong, with its error, and the thread goes on.
    """
    results: list[SearchResult] = [first]
    out = []
    for follow in item.follow_ups:
        earlier = turns_of(results)
        t0 = time.perf_counter()
        try:
            answer = None
            for event in session.search(settings).run(image, follow.question, cancel,
                                                      earlier=earlier):
                if isinstance(event, AnswerFinished):
                    answer = event.result
            if answer is None:  # the search always ends with one; this guards the contract
                raise StagewiseError("the search ended without an answer")
        except StagewiseError as error:
            out.append(FollowUpResult(follow.question, "", False, time.perf_counter() - t0,
                                      str(error)))
            continue
        if answer.status == "cancelled":
            return None
        right = any(is_correct(answer.conclusion, gold, follow.question)
                    for gold in follow.answers)
        out.append(FollowUpResult(follow.question, answer.conclusion, right,
                                  time.perf_counter() - t0))
        results.append(answer)
    return tuple(out)
