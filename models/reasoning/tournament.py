"""How the model chooses among its own candidates: a knockout of pairwise judgements.

The candidates meet in pairs (in an order drawn from the run's seed); a round's pairs are
judged together; winners meet until one is left. Before reasoning candidates meet, a
text-only check asks whether each one's reasoning is correct assuming the chosen caption
is true; in a pair where one passed and one failed, the one that passed wins unjudged.

For the paper's sentence-level search each response is the new sentence alone, the hint is
the answer so far, and there is no reasoning check.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from stagewise.models.events import (
    Candidate,
    Check,
    CorrectnessChecked,
    Event,
    JudgeVerdict,
    JudgingStarted,
    Verdict,
)
from stagewise.models.inference.sampling import mix_seed
from stagewise.models.reasoning import judge as judging
from stagewise.models.reasoning.search_backend import JudgeSession, Prompt, SearchBackend
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.reasoning.stages import Stage, parse_answer

__all__ = ["Tournament"]


class Tournament:
    """One segment's knockout, on a backend."""

    def __init__(self, backend: SearchBackend, settings: SearchSettings, question: str,
                 answer: str, unit: Stage | None, segment: int, *, sentence: bool = False
                 ) -> None:
        """Prepare a knockout.

        Args:
            backend: Where the judge's prompts are asked.
            settings: The search's settings (seed, reasoning check, judge budget).
            question: The question, stripped.
            answer: The chosen text the candidates continue.
            unit: The stage they are candidates of (None: whole answers or sentences).
            segment: The segment's number in the run.
            sentence: The paper's sentence-level judging.
        """
        self.backend, self.settings, self.question = backend, settings, question
        self.answer, self.unit, self.segment, self.sentence = answer, unit, segment, sentence
        self.verdicts: list[Verdict] = []
        self.checks: list[Check] = []

    def run(self, candidates: Sequence[Candidate]) -> Iterator[Event]:
        """Judge; yields events and returns (as the generator's value) the winner's index."""
        rng = random.Random(mix_seed(self.settings.seed, self.segment, 0x5EED))
        if self.sentence:
            responses = [c.text.strip() for c in candidates]
            hint = self.answer.strip()
        else:
            responses = [self._response_text(c) for c in candidates]
            hint = self._hint()
        pool = list(range(len(candidates)))
        rng.shuffle(pool)
        yield JudgingStarted(self.unit, self.segment, len(pool) - 1)
        correct: dict[int, bool] = {}
        if self.unit is Stage.REASONING and self.settings.check_reasoning and not self.sentence:
            self.checks = self._check_reasoning(responses)
            for c in self.checks:
                correct[c.candidate] = c.correct
                yield CorrectnessChecked(c)
        first_and_won: set[int] = set()
        with self.backend.judging() as session:
            round_no = 0
            while len(pool) > 1:
                pool = yield from self._round(session, round_no, pool, correct, responses,
                                              hint, first_and_won)
                round_no += 1
        return pool[0]

    def _round(self, session: JudgeSession, round_no: int, pool: list[int],
               correct: dict[int, bool], responses: list[str], hint: str,
               first_and_won: set[int]) -> Iterator[Event]:
        """One round of the knockout; returns the next pool."""
        pairs = []
        for i in range(0, len(pool) - 1, 2):
            a, b = pool[i], pool[i + 1]
            # a winner that was "Response 1" keeps that place: its judge prompt's start,
            # its own text included, is already in the cache
            pairs.append((b, a) if b in first_and_won and a not in first_and_won
                         else (a, b))
        bye = [pool[-1]] if len(pool) % 2 else []
        to_judge = []
        verdicts: dict[tuple[int, int], Verdict] = {}
        unit, no = self.unit, self.segment
        for a, b in pairs:
            if correct and correct[a] != correct[b]:
                loser = b if correct[a] else a
                verdicts[(a, b)] = Verdict(
                    unit, no, round_no, a, b, a if correct[a] else b,
                    f"candidate {loser + 1} failed the correctness check", "", False)
            else:
                to_judge.append((a, b))
        prompts = [self._judge_prompt(responses[a], responses[b], hint) for a, b in to_judge]
        replies = session.judge(prompts, self.settings.max_judge_tokens)
        for (a, b), reply in zip(to_judge, replies, strict=True):
            verdicts[(a, b)] = Verdict(unit, no, round_no, a, b, a if reply.choice == 1 else b,
                                       reply.reason, reply.text, reply.forced)
        first_and_won.clear()
        for pair in pairs:
            self.verdicts.append(verdicts[pair])
            if verdicts[pair].winner == pair[0] and verdicts[pair].text:
                first_and_won.add(pair[0])
            yield JudgeVerdict(verdicts[pair])
        return [verdicts[p].winner for p in pairs] + bye

    def _judge_prompt(self, first: str, second: str, hint: str) -> Prompt:
        text = judging.judge_text(self.unit, self.question, first, second, hint,
                                  sentence=self.sentence)
        return Prompt(text, (self.question, first, second, hint))

    def _response_text(self, c: Candidate) -> str:
        """What the judge reads of a candidate: its stage's content."""
        return response_text(self.unit, self.answer, c)

    def _hint(self) -> str:
        stages = parse_answer(self.answer).stages
        if self.unit is Stage.REASONING:
            return stages.get(Stage.CAPTION, "")
        if self.unit is Stage.CONCLUSION:
            return f"{stages.get(Stage.CAPTION, '')}\n{stages.get(Stage.REASONING, '')}".strip()
        return ""

    def _check_reasoning(self, responses: list[str]) -> list[Check]:
        """Ask, text only, whether each reasoning is correct assuming the caption is true."""
        caption = parse_answer(self.answer).stages.get(Stage.CAPTION, "")
        prompts = [Prompt(judging.check_text(self.question, caption, reasoning),
                          (self.question, caption, reasoning)) for reasoning in responses]
        answers = self.backend.check(prompts)
        return [Check(self.segment, i, answer.strip().lower().startswith("y"), answer)
                for i, answer in enumerate(answers)]


def response_text(unit: Stage | None, answer: str, c: Candidate) -> str:
    """A candidate's text as a judge or scorer reads it: the content of its stage (after
    ``answer``), or the whole text stripped."""
    if unit is None:
        return c.text.strip()
    return parse_answer(answer + c.text).stages.get(unit, "") or c.text.strip()
