"""The LLaVA-CoT stage format: four tagged blocks, parsed incrementally.

An answer is ``<SUMMARY>…</SUMMARY>``, ``<CAPTION>…</CAPTION>``, ``<REASONING>…</REASONING>``
and ``<CONCLUSION>…</CONCLUSION>``, in that order, usually separated by newlines.

Tag recognition is deliberately lenient, because model output is not to be trusted:

* the tag name is matched without regard to (ASCII) case: ``<summary>`` and ``<Summary>`` work;
* up to three spaces or tabs are allowed after ``<``, around ``/`` and before ``>``:
  ``< /SUMMARY >`` is a close tag, ``<SUMMARY\\n>`` and ``<    SUMMARY>`` are plain text;
* anything else that starts with ``<`` is plain text, so ``x < 5`` and ``<<SUMMARY>>`` are safe
  (the latter is the text ``<``, an open tag, then the text ``>``);
* the released model's other published form, ``(Here begins the SUMMARY stage)`` and
  ``(Here ends the SUMMARY stage)`` (its Hugging Face demo's), reads as the same tags, in
  any case.

The grammars (:mod:`stagewise.models.reasoning.stage_grammar`), in contrast, force the exact
upper-case tags.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from stagewise.models.inference.stage_mode import StageMode

__all__ = [
    "PROMPTED_INSTRUCTION",
    "STAGES",
    "TAG_WINDOW",
    "ParsedAnswer",
    "Stage",
    "StageDelta",
    "StageParser",
    "opened_stage_end",
    "parse_answer",
    "sentence_end",
    "stage_end",
    "user_text",
]


class Stage(enum.Enum):
    """One of the four stages of a LLaVA-CoT answer."""

    SUMMARY = "summary"
    CAPTION = "caption"
    REASONING = "reasoning"
    CONCLUSION = "conclusion"

    @property
    def tag(self) -> str:
        """The tag name, e.g. ``"SUMMARY"``."""
        return self.value.upper()

    @property
    def open_tag(self) -> str:
        """The exact open tag, e.g. ``"<SUMMARY>"``."""
        return f"<{self.tag}>"

    @property
    def close_tag(self) -> str:
        """The exact close tag, e.g. ``"</SUMMARY>"``."""
        return f"</{self.tag}>"

    @property
    def title(self) -> str:
        """A heading for people, e.g. ``"Summary"``."""
        return self.value.capitalize()

    @property
    def next(self) -> Stage | None:
        """The stage after this one, or None after the conclusion."""
        index = STAGES.index(self)
        return STAGES[index + 1] if index + 1 < len(STAGES) else None


STAGES: tuple[Stage, ...] = tuple(Stage)
"""The stages in the order an answer has them."""


PROMPTED_INSTRUCTION = (
    "Answer in exactly four stages, in this order, each wrapped in its own tags, and write "
    "nothing outside the tags.\n"
    "<SUMMARY>...</SUMMARY>: what the question asks and how you will approach it, without "
    "solving it yet.\n"
    "<CAPTION>...</CAPTION>: the parts of the image that matter for the question.\n"
    "<REASONING>...</REASONING>: step-by-step logic that goes from the caption to the answer.\n"
    "<CONCLUSION>...</CONCLUSION>: the final answer only; for a multiple-choice question, only "
    "the letter of the chosen option."
)
"""The instruction a model that was not fine-tuned gets before the question (:func:`user_text`)."""


def user_text(question: str, mode: StageMode) -> str:
    """The user turn's text for ``question``.

    Args:
        question: The user's question, as typed.
        mode: NATIVE gives the question alone; PROMPTED gives the instruction, a blank
            line, then the question. The instruction comes first so that the text right
            after the image is the same for every question, and is evaluated with the image
            before the question is asked (:mod:`stagewise.models.reasoning.llama_prefix`).

    Returns:
        The text to put next to the image in the user turn.
    """
    question = question.strip()
    if StageMode(mode) is StageMode.NATIVE:
        return question
    return f"{PROMPTED_INSTRUCTION}\n\n{QUESTION_LABEL}{question}"


QUESTION_LABEL = "Question: "
"""What introduces the question after the instruction, in a prompted model's user turn."""


# --------------------------------------------------------------------------------------------
# Tag scanning


_TAG_STAGES: dict[str, Stage] = {stage.tag: stage for stage in STAGES}
_LONGEST_TAG = max(len(name) for name in _TAG_STAGES)
_MAX_BLANKS = 3
_BLANKS = " \t"


@dataclass(frozen=True)
class _Tag:
    """A complete tag found in text."""

    stage: Stage
    closing: bool
    end: int  # index just after the '>'


class _Partial:
    """Marker: the text ends inside something that may still become a tag."""


_PARTIAL = _Partial()


def _skip_blanks(text: str, pos: int) -> int | None:
    """Index after up to ``_MAX_BLANKS`` spaces/tabs at ``pos``; None if there are more."""
    count = 0
    while pos < len(text) and text[pos] in _BLANKS:
        count += 1
        if count > _MAX_BLANKS:
            return None
        pos += 1
    return pos


def _read_name(text: str, pos: int) -> int:
    """Index after the run of ASCII letters at ``pos`` (stops one past the longest tag name)."""
    end = pos
    while end < len(text) and end - pos <= _LONGEST_TAG and text[end].isascii():
        if not text[end].isalpha():
            break
        end += 1
    return end


def _read_tag(text: str, start: int) -> _Tag | _Partial | None:
    """Read the tag that may start at ``text[start]`` (which is ``'<'``).

    Returns:
        The tag; ``_PARTIAL`` if the text ends before it can be decided; None if it is not a tag.
        The result for a prefix of the text is never None when the whole text has a tag here.
    """
    size = len(text)
    pos = _skip_blanks(text, start + 1)
    if pos is None:
        return None
    if pos == size:
        return _PARTIAL
    closing = text[pos] == "/"
    if closing:
        pos = _skip_blanks(text, pos + 1)
        if pos is None:
            return None
        if pos == size:
            return _PARTIAL
    name_end = _read_name(text, pos)
    name = text[pos:name_end].upper()
    if name_end == size:
        return _PARTIAL if any(tag.startswith(name) for tag in _TAG_STAGES) else None
    stage = _TAG_STAGES.get(name)
    if stage is None:
        return None
    pos = _skip_blanks(text, name_end)
    if pos is None:
        return None
    if pos == size:
        return _PARTIAL
    if text[pos] != ">":
        return None
    return _Tag(stage, closing, pos + 1)


_MARKERS: dict[str, tuple[Stage, bool]] = {
    f"(here {verb} the {stage.tag.lower()} stage)": (stage, verb == "ends")
    for stage in STAGES for verb in ("begins", "ends")
}
"""The released LLaVA-CoT model's other published form of its tags, as its Hugging Face
demo shows them: ``(Here begins the SUMMARY stage) … (Here ends the SUMMARY stage)``."""
_LONGEST_MARKER = max(len(marker) for marker in _MARKERS)
TAG_WINDOW = 48
"""Longer than any tag the parser accepts, blanks inside included: a stop at a close tag
needs to look only this far back from the newest text."""


def _read_marker(text: str, start: int) -> _Tag | _Partial | None:
    """Read the marker that may start at ``text[start]`` (which is ``'('``); any case."""
    head = text[start : start + _LONGEST_MARKER].lower()
    for marker, (stage, closing) in _MARKERS.items():
        if head.startswith(marker):
            return _Tag(stage, closing, start + len(marker))
    if start + len(head) == len(text) and any(m.startswith(head) for m in _MARKERS):
        return _PARTIAL
    return None


def _read_any(text: str, start: int) -> _Tag | _Partial | None:
    """A tag (at ``'<'``) or a marker (at ``'('``) starting at ``text[start]``."""
    return _read_tag(text, start) if text[start] == "<" else _read_marker(text, start)


def _next_start(text: str, pos: int) -> int:
    """Index of the next ``'<'`` or ``'('`` at or after ``pos``; -1 if none."""
    found = [i for i in (text.find("<", pos), text.find("(", pos)) if i != -1]
    return min(found) if found else -1


def _find_tag(text: str, pos: int) -> tuple[int, _Tag] | None:
    """The first complete tag (or marker) at or after ``pos``, with its start index."""
    while (start := _next_start(text, pos)) != -1:
        tag = _read_any(text, start)
        if isinstance(tag, _Tag):
            return start, tag
        pos = start + 1
    return None


# --------------------------------------------------------------------------------------------
# Incremental parsing


@dataclass(frozen=True)
class StageDelta:
    """A piece of streamed text, attributed to a stage.

    Attributes:
        stage: The stage the text belongs to; None for text outside every stage.
        text: The text; never empty and never containing a complete tag.
    """

    stage: Stage | None
    text: str


class StageParser:
    """Incremental parser over streamed model output; never raises on model output.

    Feed it text as it arrives; it returns the new content as :class:`StageDelta` pieces. Tags
    are never part of any delta. A trailing ``'<'`` that may still grow into a tag (``"</SUMM"``)
    is held back until the next :meth:`feed` or :meth:`finish` decides it. However the text is
    split into chunks, the final state is the same as for the text fed whole.

    Hostile output is handled by these rules:

    * an open tag of the stage that is already open is ignored;
    * an open tag of another stage implicitly closes the open one;
    * an open tag of a stage that was already closed reopens it: new text is appended to its
      content (after a ``"\\n"`` if the content does not already end in whitespace);
    * a close tag of a stage that is not the open one is ignored;
    * text outside every stage is reported with ``stage=None`` and collected in :attr:`stray`;
    * at :meth:`finish`, a stage still open stops being current but is not counted as closed,
      so an answer cut off mid-stage is never :attr:`ParsedAnswer.complete`.

    Attributes:
        contents: The raw content of each stage so far (all four keys, ``""`` if none).
        opened: Stages whose open tag has been seen.
        closed: Stages that ended with their close tag or were implicitly closed by the open
            tag of another stage, and are not open again.
        current: The stage now open, or None.
    """

    def __init__(self) -> None:
        self.contents: dict[Stage, str] = {stage: "" for stage in STAGES}
        self.opened: set[Stage] = set()
        self.closed: set[Stage] = set()
        self.current: Stage | None = None
        self._pending = ""
        self._stray_parts: list[str] = [""]

    @property
    def stray(self) -> str:
        """Text outside the stages: each run between tags stripped, blank runs dropped,
        the rest joined by newlines."""
        parts = (part.strip() for part in self._stray_parts)
        return "\n".join(part for part in parts if part)

    def feed(self, text: str) -> list[StageDelta]:
        """Take the next chunk of model output.

        Args:
            text: Any text, possibly splitting tags anywhere.

        Returns:
            The new content, in order; possibly empty.
        """
        self._pending += text
        return self._drain(final=False)

    def finish(self) -> list[StageDelta]:
        """End the stream: release held-back text and leave the open stage, if any.

        Returns:
            The content that was held back, in order; possibly empty.
        """
        deltas = self._drain(final=True)
        self.current = None
        return deltas

    def answer(self) -> ParsedAnswer:
        """The answer as parsed so far (call :meth:`finish` first for the final one)."""
        return ParsedAnswer(
            stages={stage: self.contents[stage].strip() for stage in STAGES},
            closed=frozenset(self.closed),
            stray=self.stray,
        )

    def _drain(self, *, final: bool) -> list[StageDelta]:
        """Consume the pending text up to a trailing possible tag (or all of it if ``final``)."""
        deltas: list[StageDelta] = []
        text = self._pending
        emitted = 0
        search = 0
        while (start := _next_start(text, search)) != -1:
            tag = _read_any(text, start)
            if isinstance(tag, _Tag):
                self._emit(text[emitted:start], deltas)
                self._apply(tag, deltas)
                emitted = search = tag.end
            elif tag is _PARTIAL and not final:
                self._emit(text[emitted:start], deltas)
                self._pending = text[start:]
                return deltas
            else:
                search = start + 1
        self._emit(text[emitted:], deltas)
        self._pending = ""
        return deltas

    def _emit(self, text: str, deltas: list[StageDelta]) -> None:
        """Record ``text`` as content of the current stage (or as stray text)."""
        if not text:
            return
        if self.current is None:
            self._stray_parts[-1] += text
        else:
            self.contents[self.current] += text
        deltas.append(StageDelta(self.current, text))

    def _apply(self, tag: _Tag, deltas: list[StageDelta]) -> None:
        """Update the state for a complete tag."""
        if self._stray_parts[-1].strip():
            self._stray_parts.append("")
        else:
            self._stray_parts[-1] = ""
        if tag.closing:
            if tag.stage is self.current:
                self.closed.add(tag.stage)
                self.current = None
            return
        if tag.stage is self.current:
            return
        if self.current is not None:
            self.closed.add(self.current)
        self.current = tag.stage
        self.closed.discard(tag.stage)
        self.opened.add(tag.stage)
        content = self.contents[tag.stage]
        if content and not content[-1].isspace():
            self._emit("\n", deltas)


@dataclass(frozen=True)
class ParsedAnswer:
    """A whole answer split into its stages.

    Attributes:
        stages: Each stage's content, stripped; all four keys, ``""`` for a missing stage.
        closed: The stages that were properly closed (see :class:`StageParser`).
        stray: Text found outside every stage (see :attr:`StageParser.stray`).
    """

    stages: dict[Stage, str]
    closed: frozenset[Stage]
    stray: str

    @property
    def complete(self) -> bool:
        """Whether all four stages were closed."""
        return all(stage in self.closed for stage in STAGES)

    @property
    def conclusion(self) -> str:
        """The final answer: the conclusion's content, stripped (``""`` if there is none)."""
        return self.stages[Stage.CONCLUSION]


def parse_answer(text: str) -> ParsedAnswer:
    """Parse a whole answer; never raises.

    Args:
        text: The model output.

    Returns:
        The stages, as :class:`StageParser` reads them after feeding ``text`` and finishing.
    """
    parser = StageParser()
    parser.feed(text)
    parser.finish()
    return parser.answer()


# --------------------------------------------------------------------------------------------
# Stopping points


def stage_end(text: str, stage: Stage) -> int | None:
    """Index just after the first close tag of ``stage`` in ``text``.

    Tags are recognised as by :class:`StageParser` (case and a few blanks do not matter).

    Returns:
        The index, or None if ``text`` has no complete close tag of ``stage``.
    """
    pos = 0
    while (found := _find_tag(text, pos)) is not None:
        _, tag = found
        if tag.closing and tag.stage is stage:
            return tag.end
        pos = tag.end
    return None


def opened_stage_end(text: str, stage: Stage) -> int | None:
    """:func:`stage_end` for a candidate that opens its stage itself (a model that writes
    the stages natively): a close tag that comes first, before the stage's open tag or any
    text (``</CAPTION>`` as the stage's first words), closes nothing and is not its end.

    ``text`` may be the candidate's newest text only (see :data:`TAG_WINDOW`): a close tag
    with text before it is an end, as for :func:`stage_end`.
    """
    pos = 0
    opened = False
    while (found := _find_tag(text, pos)) is not None:
        start, tag = found
        if tag.stage is stage and not tag.closing:
            opened = True
        elif tag.stage is stage and (opened or text[:start].strip()):
            return tag.end
        pos = tag.end
    return None


_SENTENCE_PUNCTUATION = ".!?"


def sentence_end(text: str) -> int | None:
    """Index just after the first sentence of stage content in ``text``.

    ``text`` is what was generated since the last step of a sentence-level search. The rule:

    * open tags and the whitespace before the first other character are skipped; they do not
      make a sentence;
    * once the sentence has a non-blank character, it ends just after ``". "``, ``"! "`` or
      ``"? "`` (the punctuation followed by any whitespace character, which is included), or just
      after a ``"\\n"``;
    * any close tag ends the sentence, even an empty one: the index is just after the tag.

    So ``"3.14"`` does not end a sentence, but the ``"e.g. "`` in ``"e.g. this"`` does.

    Returns:
        The index, or None if the first sentence is not finished yet.
    """
    started = False
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char == "<":
            tag = _read_tag(text, pos)
            if isinstance(tag, _Tag):
                if tag.closing:
                    return tag.end
                pos = tag.end
                continue
        if char == "\n" and started:
            return pos + 1
        if char in _SENTENCE_PUNCTUATION and pos + 1 < len(text) and text[pos + 1].isspace():
            return pos + 2
        started = started or not char.isspace()
        pos += 1
    return None
