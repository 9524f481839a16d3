"""What a search generates, segment by segment: a stage, a sentence or a whole answer.

Stage-level search writes the four stages one after the other; best-of-N writes the whole
answer at once; the paper's sentence-level search writes the whole answer one sentence at
a time, a sentence ending where the text so far ends in ".". In prompted mode the search
writes each stage's open tag itself, so candidates generate only the content and the
close tag; a native model writes its own tags.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.search_backend import SampleRequest, StageBudget
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.reasoning.stage_grammar import answer_grammar, stage_grammar
from stagewise.models.stages import (
    STAGES,
    Stage,
    StageParser,
    opened_stage_end,
    stage_end,
)

__all__ = ["Segment", "paper_sentence_stop", "sentence_segments", "stage_segment",
           "whole_answer_segment"]


@dataclass(frozen=True)
class Segment:
    """One thing to sample candidates of and choose among.

    Attributes:
        unit: The stage, or None for a whole answer or a sentence.
        grammar: The candidates' GBNF grammar (prompted mode), or None.
        stop: Where a candidate ends (see :attr:`SampleRequest.stop`).
        stop_strings: The same as literal strings.
        max_tokens: Tokens a candidate may write.
        prefix: Text the search writes before sampling (a prompted stage's open tag).
        whole: A whole answer: the per-stage budget is kept inside it.
        tail_stop: The stop is a close tag: it can only complete in the newest piece.
        sentence: The paper's next-sentence judging, without the reasoning check.
    """

    unit: Stage | None
    grammar: str | None
    stop: Callable[[str], int | None]
    stop_strings: tuple[str, ...]
    max_tokens: int
    prefix: str = ""
    whole: bool = False
    tail_stop: bool = True
    sentence: bool = False

    def request(self, n: int, settings: SearchSettings, segment: int, answer: str,
                open_stage_tokens: int) -> SampleRequest:
        """The backend request for ``n`` candidates of this segment after ``answer``."""
        budget = (StageBudget(settings.max_stage_tokens, answer, open_stage_tokens)
                  if self.whole else None)
        return SampleRequest(n, settings.seed, segment, settings.sampling, self.grammar,
                             self.stop, self.stop_strings, self.tail_stop, self.max_tokens,
                             budget)


def stage_segment(stage: Stage, settings: SearchSettings, mode: StageMode,
                  answer: str) -> Segment:
    """One stage as a segment, as stage-level search samples it after ``answer``."""
    prompted = mode is StageMode.PROMPTED
    opened = stage.open_tag if not answer else f"\n\n{stage.open_tag}"
    # a native stage is opened by the model: a close tag before its open tag ends nothing
    end = stage_end if prompted else opened_stage_end
    return Segment(stage, stage_grammar(stage, opened=True) if prompted else None,
                   lambda t: end(t, stage), (stage.close_tag,),
                   settings.max_stage_tokens, opened if prompted else "")


def whole_answer_segment(settings: SearchSettings, mode: StageMode) -> Segment:
    """The whole answer as one segment, as best-of-N samples it."""
    prompted = mode is StageMode.PROMPTED
    return Segment(None, answer_grammar(opened=True) if prompted else None,
                   lambda t: stage_end(t, Stage.CONCLUSION), (Stage.CONCLUSION.close_tag,),
                   4 * settings.max_stage_tokens,
                   Stage.SUMMARY.open_tag if prompted else "", whole=True)


def sentence_segments(settings: SearchSettings, mode: StageMode,
                      chosen: Callable[[], tuple[str, int, bool]]) -> Iterator[Segment]:
    """The paper's sentence-level search: the whole answer, one sentence at a time.

    Args:
        settings: The search's settings (the answer's budget).
        mode: Prompted or native.
        chosen: The chosen text so far when the next segment is planned: (its text, the
            tokens it holds, whether it ended the assistant's turn).
    """
    prompted = mode is StageMode.PROMPTED
    total = 4 * settings.max_stage_tokens
    while True:
        answer, spent, ended = chosen()
        if ended:
            return
        parser = StageParser()
        parser.feed(answer)
        if Stage.CONCLUSION in parser.closed or spent >= total:
            return
        stage = parser.current or next((st for st in STAGES if st not in parser.opened), None)
        if stage is None:
            return
        first = not answer
        grammar = None
        if prompted:
            grammar = answer_grammar(stage, opened=first or parser.current is not None)
        yield Segment(None, grammar, paper_sentence_stop, (".", Stage.CONCLUSION.close_tag),
                      total - spent, stage.open_tag if prompted and first else "", whole=True,
                      tail_stop=False, sentence=True)


def paper_sentence_stop(text: str) -> int | None:
    """Where one of the paper's sentence segments ends: when the text written so far ends
    in "." (as the reference decides it), or the conclusion closes."""
    end = stage_end(text, Stage.CONCLUSION)
    if end is not None:
        return end
    return len(text) if text.endswith(".") else None
