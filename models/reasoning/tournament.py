"""A knockout of pairwise verdicts, as the paper chooses among candidates.

The candidates meet in pairs drawn from the run's seed; which of a pair is shown as
"Response 1" is drawn again for every match, as the reference draws it. A round's pairs are
decided together; winners meet until one is left. Before reasoning candidates meet, a
text-only check asks whether each one's reasoning is correct assuming the chosen caption is
true; in a pair where one passed and one failed, the one that passed wins undecided.

Who decides a pair is a :class:`Referee`: the model writing a verdict
(:mod:`stagewise.models.reasoning.selections.judge`) or the model's probability of naming
each response (:mod:`stagewise.models.reasoning.selections.verdict`).

For the paper's sentence-level search each response is the new sentence alone, the hint is
the answer so far, and there is no reasoning check.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from stagewise.models.events import (
    Candidate,
    Check,
    CorrectnessChecked,
    Event,
    JudgeVerdict,
    JudgingStarted,
    Verdict,
)
from stagewise.models.inference.sampling_settings import mix_seed
from stagewise.models.reasoning import judge as judging
from stagewise.models.reasoning.search_backend import JudgeSession, Prompt, ReplyRequest
from stagewise.models.stages import Stage, parse_answer

if TYPE_CHECKING:
    from stagewise.models.reasoning.selections.base import Choosing

__all__ = ["Referee", "Tournament", "response_text"]


class Referee(Protocol):
    """Decides the pairs of one round."""

    def decide(self, session: JudgeSession, job: Choosing, round_no: int,
               pairs: Sequence[tuple[int, int]], prompts: Sequence[tuple[Prompt, Prompt]]
               ) -> list[Verdict]:
        """One verdict per pair ``(first, second)``; ``prompts`` holds each pair's judge
        prompt in that order and in the other."""
        ...


class Tournament:
    """One segment's knockout."""

    def __init__(self, job: Choosing, referee: Referee) -> None:
        self.job, self.referee = job, referee
        self.verdicts: list[Verdict] = []
        self.checks: list[Check] = []

    def run(self, candidates: Sequence[Candidate]) -> Iterator[Event]:
        """Decide; yields events and returns (as the generator's value) the winner's index."""
        job = self.job
        rng = random.Random(mix_seed(job.settings.seed, job.segment, 0x5EED))
        if job.sentence:
            responses = [c.text.strip() for c in candidates]
            hint = job.answer.strip()
        else:
            responses = [response_text(job.unit, job.answer, c) for c in candidates]
            hint = self._hint()
        pool = list(range(len(candidates)))
        rng.shuffle(pool)
        yield JudgingStarted(job.unit, job.segment, len(pool) - 1)
        correct: dict[int, bool] = {}
        if job.unit is Stage.REASONING and job.settings.check_reasoning and not job.sentence:
            self.checks = self._check_reasoning(responses)
            for c in self.checks:
                correct[c.candidate] = c.correct
                yield CorrectnessChecked(c)
        with job.backend.judging() as session:
            round_no = 0
            while len(pool) > 1:
                pool = yield from self._round(session, rng, round_no, pool, correct,
                                              responses, hint)
                round_no += 1
        return pool[0]

    def _round(self, session: JudgeSession, rng: random.Random, round_no: int,
               pool: list[int], correct: dict[int, bool], responses: list[str], hint: str
               ) -> Iterator[Event]:
        """One round of the knockout; returns the next pool."""
        job = self.job
        pairs = []
        for i in range(0, len(pool) - 1, 2):
            a, b = pool[i], pool[i + 1]
            pairs.append((b, a) if rng.random() < 0.5 else (a, b))  # the order, drawn anew
        bye = [pool[-1]] if len(pool) % 2 else []
        decided: dict[tuple[int, int], Verdict] = {}
        to_decide = []
        for a, b in pairs:
            if correct and correct[a] != correct[b]:
                loser = b if correct[a] else a
                decided[(a, b)] = Verdict(
                    job.unit, job.segment, round_no, a, b, a if correct[a] else b,
                    f"candidate {loser + 1} failed the correctness check", "", False)
            else:
                to_decide.append((a, b))
        prompts = [(self._prompt(responses[a], responses[b], hint),
                    self._prompt(responses[b], responses[a], hint)) for a, b in to_decide]
        if to_decide:
            verdicts = self.referee.decide(session, job, round_no, to_decide, prompts)
            decided.update(zip(to_decide, verdicts, strict=True))
        for pair in pairs:
            self.verdicts.append(decided[pair])
            yield JudgeVerdict(decided[pair])
        return [decided[p].winner for p in pairs] + bye

    def _prompt(self, first: str, second: str, hint: str) -> Prompt:
        job = self.job
        text = judging.judge_text(job.unit, job.question, first, second, hint,
                                  sentence=job.sentence, wording=job.settings.judge_prompt)
        return Prompt(text, (job.question, first, second, hint))

    def _hint(self) -> str:
        stages = parse_answer(self.job.answer).stages
        if self.job.unit is Stage.REASONING:
            return stages.get(Stage.CAPTION, "")
        if self.job.unit is Stage.CONCLUSION:
            return f"{stages.get(Stage.CAPTION, '')}\n{stages.get(Stage.REASONING, '')}".strip()
        return ""

    def _check_reasoning(self, responses: list[str]) -> list[Check]:
        """Ask, text only, whether each reasoning is correct assuming the caption is true:
        a greedy "Yes" or "No" (short wording), or the reference's free reply, which fails
        a reasoning when it says "incorrect"."""
        job = self.job
        caption = parse_answer(job.answer).stages.get(Stage.CAPTION, "")
        if job.settings.judge_prompt != "reference":
            prompts = [Prompt(judging.check_text(job.question, caption, reasoning),
                              (job.question, caption, reasoning), image=False)
                       for reasoning in responses]
            answers = job.backend.check(prompts)
            return [Check(job.segment, i, answer.strip().lower().startswith("y"), answer)
                    for i, answer in enumerate(answers)]
        prompts = [Prompt(judging.reference_check_text(caption, reasoning),
                          (caption, reasoning), image=False) for reasoning in responses]
        request = ReplyRequest(job.settings.max_judge_tokens, job.settings.sampling,
                               mix_seed(job.settings.seed, job.segment, 0xC4EC), _no_stop)
        with job.backend.judging() as session:
            replies = session.reply(prompts, request)
        return [Check(job.segment, i, "incorrect" not in reply, reply)
                for i, reply in enumerate(replies)]


def _no_stop(text: str) -> int | None:
    return None


def response_text(unit: Stage | None, answer: str, c: Candidate) -> str:
    """A candidate's text as a judge or scorer reads it: the content of its stage (after
    ``answer``), or the whole text stripped."""
    if unit is None:
        return c.text.strip()
    return parse_answer(answer + c.text).stages.get(unit, "") or c.text.strip()
