"""How sure a finished run is of its conclusion, from the search itself; Qt-free.

:func:`confidence_of` reads a :class:`~stagewise.models.events.SearchResult` and nothing else
(a run restored from the history gives the same answer as when it finished):

* **agreement**, where the search wrote several final candidates: how many of them reached
  the conclusion that was chosen. The final candidates are the last set of whole answers
  (best-of-N: independent answers; sentence-level search: last sentences continuing the
  chosen text; each candidate's conclusion is read from the answer it completes), or every
  candidate of the Conclusion stage (stage-level beam: N conclusions written after the one
  chosen reasoning; retrace: one conclusion after each finalist reasoning). Conclusions are
  compared normalised: lower case, punctuation at the ends of words and the articles "a",
  "an", "the" dropped, spaces collapsed ("The answer: 3." is "answer 3"). A candidate with no
  conclusion never agrees.
* **margin**: the chosen candidate's score minus the best other score, in its selection's
  units (mean log-probability, verdicts won, P(correct)…); None with a single candidate.
* **probability**, with a single final candidate (beam 1): the geometric mean probability of
  the tokens of the candidate that wrote the conclusion, ``exp(mean log-probability)``, its
  tags included (the search keeps each candidate's mean, not each token's).

The label, and its level, by these thresholds:

=================================  ====================  ==============
what was measured                   level                 badge
=================================  ====================  ==============
every final candidate agrees        ``sure``              "4 of 4 agree"
more than half agree, not all       ``fairly sure``       "3 of 4 agree"
half or fewer agree                 ``unsure``            "2 of 4 agree"
one candidate, probability ≥ 0.9    ``sure``              "sure"
one candidate, 0.5 ≤ p < 0.9        ``fairly sure``       "fairly sure"
one candidate, p < 0.5              ``unsure``            "unsure"
=================================  ====================  ==============

These say how sure the *model* is, not how often it is right: candidates written after the
same chosen reasoning agree easily, and a small model is often sure of a wrong answer. What
each label was worth on the demo's held-out puzzles is in
:mod:`stagewise.models.reasoning.measured`, and the window's tooltip quotes it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from stagewise.models.events import Candidate, SearchResult
from stagewise.models.reasoning.measured import level_reliability, selection_reliability
from stagewise.models.stages import STAGES, Stage, parse_answer

__all__ = ["FAIRLY_SURE_PROBABILITY", "SURE_PROBABILITY", "Confidence", "Level",
           "confidence_of", "explain", "normalise_conclusion"]

Level = Literal["sure", "fairly sure", "unsure"]

SURE_PROBABILITY = 0.9
"""A single candidate whose tokens' geometric mean probability is at least this is "sure"."""
FAIRLY_SURE_PROBABILITY = 0.5
"""Below this it is "unsure"; between the two, "fairly sure"."""

_TAG = re.compile(r"</?(?:" + "|".join(s.name for s in STAGES) + r")>")
_ARTICLES = frozenset({"a", "an", "the"})
_END_PUNCTUATION = "\"'`‘’“”«»()[]{}<>*_,;:!?."


@dataclass(frozen=True)
class Confidence:
    """How sure a run is of its conclusion (see the module docstring).

    Attributes:
        level: ``"sure"``, ``"fairly sure"`` or ``"unsure"``.
        label: The badge's text: ``"3 of 4 agree"``, or the level for a single candidate.
        agreeing: Final candidates whose conclusion is the chosen one's (None: one candidate).
        candidates: Final candidates counted.
        margin: The chosen candidate's score minus the best other score (None: one
            candidate, or no scores).
        probability: A single candidate's geometric mean token probability (None when
            there were several).
        select: The selection that chose, whose units the margin is in.
        shared_reasoning: The final candidates all continue the same chosen text (stage-level
            beam: the reasoning it kept; sentence-level: every sentence before the last),
            so their agreement says less than that of independent answers.
    """

    level: Level
    label: str
    agreeing: int | None
    candidates: int
    margin: float | None
    probability: float | None
    select: str
    shared_reasoning: bool = False

    @property
    def agreement(self) -> float | None:
        """The share of final candidates that agree with the chosen one (None: one)."""
        if self.agreeing is None or not self.candidates:
            return None
        return self.agreeing / self.candidates

    def to_json(self) -> dict[str, Any]:
        """The ``confidence`` object of ``ask --json`` and the JSON export."""
        return {
            "agreement": None if self.agreement is None else round(self.agreement, 4),
            "agreeing": self.agreeing, "candidates": self.candidates,
            "margin": _rounded(self.margin), "probability": _rounded(self.probability),
            "level": self.level, "label": self.label,
        }

    def summary(self) -> str:
        """One line for people: ``"3 of 4 final candidates agree (fairly sure); margin
        0.21 mean log-probability"``."""
        if self.agreeing is None:
            p = self.probability
            shown = "unknown" if p is None else f"{p:.2f}"
            return (f"{self.label}: the conclusion's tokens had a mean probability of "
                    f"{shown} (one candidate)")
        after = " continuing the answer already chosen" if self.shared_reasoning else ""
        line = (f"{self.agreeing} of {self.candidates} final candidates{after} reached this "
                f"conclusion ({self.level})")
        if self.margin is not None:
            line += f"; the {self.select} selection's margin was {self.margin:.3g}"
        return line


def explain(confidence: Confidence, strategy: str) -> str:
    """What ``confidence`` means and what it has been worth, for people (the badge's
    tooltip): what was measured, that it is the model's own certainty, how answers with this
    level fared on the demo (``strategy``: the run's), and how often the selection that chose
    picked right there."""
    parts = [confidence.summary()[:1].upper() + confidence.summary()[1:] + "."]
    if confidence.agreeing is None:
        parts.append("That is how sure the model was of its own words, not how often it is "
                     "right.")
        run = "single"
    else:
        if confidence.shared_reasoning:
            parts.append("They all continue the text the search had already kept (for "
                         "stage-level beam, its one chosen reasoning), so they agree more "
                         "easily than independent answers would.")
        parts.append("Agreement is the model's own consistency, not proof.")
        run = strategy
        parts.append(selection_reliability(confidence.select))
    if worth := level_reliability(run, confidence.level):
        parts.append(worth)
    return " ".join(parts)


def normalise_conclusion(text: str) -> str:
    """A conclusion as compared: without tags, lower case, each word's leading and
    trailing punctuation dropped, without articles, single-spaced."""
    words = []
    for raw in _TAG.sub(" ", text).lower().split():
        word = raw.strip(_END_PUNCTUATION)
        if word and word not in _ARTICLES:
            words.append(word)
    return " ".join(words)


def confidence_of(result: SearchResult) -> Confidence | None:
    """How sure ``result`` is of its conclusion; None when it has none to be sure of (it
    was stopped, or wrote no conclusion)."""
    if result.status != "finished" or not result.conclusion.strip():
        return None
    final = _final_candidates(result)
    chosen = set(result.chosen)
    winner = next((c for c, _ in final if (c.segment, c.index) in chosen), None)
    if winner is None:
        return None
    if len(final) == 1:
        p = math.exp(winner.mean_logprob) if math.isfinite(winner.mean_logprob) else None
        level = _probability_level(p)
        return Confidence(level, level, None, 1, None, p, result.select)
    target = normalise_conclusion(result.conclusion)
    agreeing = sum(1 for _, text in final if text and text == target)
    n = len(final)
    if agreeing == n:
        level: Level = "sure"
    elif 2 * agreeing > n:
        level = "fairly sure"
    else:
        level = "unsure"
    segments = {c.segment for c, _ in final}
    shared = len(segments) == 1 and any(no < min(segments) for no, _ in result.chosen)
    return Confidence(level, f"{agreeing} of {n} agree", agreeing, n,
                      _margin(winner, [c for c, _ in final]), None, result.select, shared)


def _probability_level(p: float | None) -> Level:
    if p is not None and p >= SURE_PROBABILITY:
        return "sure"
    if p is not None and p >= FAIRLY_SURE_PROBABILITY:
        return "fairly sure"
    return "unsure"


def _final_candidates(result: SearchResult) -> list[tuple[Candidate, str]]:
    """The final candidates with their normalised conclusions (see the module docstring)."""
    concluding = [c for c in result.candidates if c.unit is Stage.CONCLUSION]
    if concluding:
        return [(c, normalise_conclusion(c.text)) for c in concluding]
    whole = [c for c in result.candidates if c.unit is None]
    if not whole:
        return []
    last = max(c.segment for c in whole)
    final = [c for c in whole if c.segment == last]
    chosen = set(result.chosen)
    winner = next((c for c in final if (c.segment, c.index) in chosen), None)
    before = ""
    if winner is not None and (at := result.answer_text.rfind(winner.text)) >= 0:
        before = result.answer_text[:at]  # what the last set of candidates continued
    return [(c, normalise_conclusion(
        parse_answer(before + c.text).stages.get(Stage.CONCLUSION, ""))) for c in final]


def _margin(winner: Candidate, final: list[Candidate]) -> float | None:
    """The winner's score minus the best other one's, where all are scored."""
    others = [c.score for c in final if c is not winner]
    if winner.score is None or not others or any(s is None for s in others):
        return None
    best_other = max(s for s in others if s is not None)
    margin = winner.score - best_other
    return margin if math.isfinite(margin) else None


def _rounded(value: float | None) -> float | None:
    return round(value, 4) if value is not None and math.isfinite(value) else None
