"""Training examples for the demo model: answers, judgements and reasoning checks.

Every prompt is rendered exactly as the search renders it at run time (the same chat
template, :func:`stagewise.models.stages.user_text`,
:mod:`stagewise.models.reasoning.judge`'s texts and hints), so the
model learns the formats it will be asked in:

- *answer*: image + question → the four stages, the model writing its own tags;
- *judge*: image + a judge prompt comparing a right and a wrong candidate of one stage (or
  of a whole answer, for best-of-N) that differ in one thing → "Since <the true fact at the
  difference>, I choose response <n>.";
- *check*: text only, the reasoning check → "Yes" or "No";
- *follow*: a follow-up (:mod:`stagewise.models.build.puzzles.follow_ups`) in the chat
  template's multi-turn form: image + the first question, the first answer's conclusion (what
  the window and ``ask`` send back), then the follow-up → its four stages.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import numpy as np

from stagewise.models.build.puzzles import (
    FollowUp,
    Puzzle,
    answer_text,
    corrupt,
    corrupt_with_fact,
    follow_up,
    follow_up_text,
    follow_ups,
    verdict_text,
)
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.judge import check_text, judge_text
from stagewise.models.recipes.demo.tokenizer import Tokenizer, prompt_parts
from stagewise.models.stages import STAGES, Stage, user_text


@dataclass(frozen=True)
class Example:
    """One token sequence; the image's embeddings go in after ``before`` tokens.

    Attributes:
        ids: The tokens; where the image goes, ``n_image`` placeholder ids.
        loss_from: Index of the first token the loss is taken on (the reply's start).
        image: Index of the puzzle's image, or -1 for a text-only example.
        kind: "answer", "judge", "check" or "follow".
        aux: Spans ``(start, end)`` of tokens before the reply that are also predicted, at
            the training's ``aux_weight`` (the verifier's right steps).
    """

    ids: np.ndarray
    loss_from: int
    image: int
    kind: str
    aux: tuple[tuple[int, int], ...] = ()


class ExampleBuilder:
    """Turns puzzles into token sequences with llama.cpp's tokenizer.

    Args:
        tokenizer: The model's tokenizer.
        n_image: Embeddings one image becomes (the vision tower's patches).
    """

    def __init__(self, tokenizer: Tokenizer, n_image: int) -> None:
        self.tok = tokenizer
        self.n_image = n_image
        self.image_at = len(tokenizer.encode(prompt_parts("x").before))

    def answer(self, puzzle: Puzzle, image: int) -> Example:
        return self._with_image(user_text(puzzle.question, StageMode.NATIVE),
                                answer_text(puzzle), image, "answer")

    def judge(self, puzzle: Puzzle, image: int, stage: Stage | None,
              rng: random.Random) -> Example:
        """A right and a wrong candidate of ``stage`` (None: whole answers) in random order.

        The wrong one differs in one thing (a hard negative); the verdict states the true
        fact at that difference before choosing (see :func:`corrupt_with_fact`).
        """
        if stage is None:
            wrong_stage = rng.choice(STAGES)
            broken = corrupt_with_fact(puzzle, wrong_stage, rng)
            wrong_stages = {**puzzle.stages, wrong_stage: broken.wrong}
            right, wrong = answer_text(puzzle), answer_text(replace(puzzle, stages=wrong_stages))
            hint = ""
        else:
            broken = corrupt_with_fact(puzzle, stage, rng)
            right, wrong = puzzle.stages[stage], broken.wrong
            hint = _hint(puzzle, stage)
        winner = rng.choice((1, 2))
        first, second = (right, wrong) if winner == 1 else (wrong, right)
        text = judge_text(stage, puzzle.question, first, second, hint)
        verdict = verdict_text(broken.fact, winner)
        return self._with_image(text, verdict, image, "judge")

    def check(self, puzzle: Puzzle, rng: random.Random) -> Example:
        """The reasoning check on the right reasoning or a wrong one, half and half."""
        correct = rng.random() < 0.5
        reasoning = (puzzle.stages[Stage.REASONING] if correct
                     else corrupt(puzzle, Stage.REASONING, rng))
        parts = prompt_parts(check_text(puzzle.question, puzzle.stages[Stage.CAPTION],
                                        reasoning), with_image=False)
        prompt = self.tok.encode(parts.after)
        reply = [*self.tok.encode("Yes" if correct else "No"), self.tok.eos]
        return Example(np.array(prompt + reply, dtype=np.int32), len(prompt), -1, "check")

    def follow(self, puzzle: Puzzle, image: int, follow: FollowUp) -> Example:
        """A follow-up after ``puzzle``'s question, its conclusion as the earlier answer."""
        earlier = [(puzzle.question.strip(), puzzle.answer.strip())]
        return self._with_image(user_text(follow.question, StageMode.NATIVE),
                                follow_up_text(follow), image, "follow", earlier)

    def _with_image(self, user: str, reply: str, image: int, kind: str,
                    earlier: list[tuple[str, str]] | None = None) -> Example:
        parts = prompt_parts(user, earlier=earlier or ())
        before, after = self.tok.encode(parts.before), self.tok.encode(parts.after)
        if len(before) != self.image_at:
            raise AssertionError("the chat template put the image somewhere else")
        prompt = before + [self.tok.eos] * self.n_image + after
        ids = prompt + self.tok.encode(reply) + [self.tok.eos]
        return Example(np.array(ids, dtype=np.int32), len(prompt), image, kind)


def _hint(puzzle: Puzzle, stage: Stage) -> str:
    """What the search shows the judge besides the two responses (see StageSearch._hint)."""
    if stage is Stage.REASONING:
        return puzzle.stages[Stage.CAPTION]
    if stage is Stage.CONCLUSION:
        return f"{puzzle.stages[Stage.CAPTION]}\n{puzzle.stages[Stage.REASONING]}".strip()
    return ""


def build_examples(builder: ExampleBuilder, puzzles: list[Puzzle], *, seed: int = 0,
                   judge_share: float = 0.5, check_share: float = 0.1,
                   follow_share: float = 0.0) -> list[Example]:
    """One answer per puzzle, plus judge, check and follow-up examples for a share of them.

    Judge examples are spread evenly over the four stages and whole answers. A puzzle that
    only a "why" follows gets a follow-up at ``follow_share``, one that an "and" or a
    "remove" can follow (counts and attributes, a third of the puzzles) at three times that
    (at most always), so that those kinds are not rare: at 0.15, a quarter of the puzzles
    get one, about 64% "why", 25% "and" and 11% "remove".
    """
    rng = random.Random(f"examples-{seed}")
    units: list[Stage | None] = [*STAGES, None]
    out = []
    for index, puzzle in enumerate(puzzles):
        out.append(builder.answer(puzzle, index))
        if rng.random() < judge_share:
            out.append(builder.judge(puzzle, index, rng.choice(units), rng))
        if rng.random() < check_share:
            out.append(builder.check(puzzle, rng))
        if follow_share:
            only_why = len(follow_ups(puzzle)) == 1
            if rng.random() < (follow_share if only_why else min(1.0, 3 * follow_share)):
                out.append(builder.follow(puzzle, index, follow_up(puzzle, rng)))
    return out
