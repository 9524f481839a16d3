"""Follow-up questions about a puzzle's picture: true to the image, in the puzzles' format."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from functools import cache

from stagewise.models.build.puzzles import (
    FOLLOW_UP_KINDS,
    Puzzle,
    follow_up,
    follow_up_text,
    follow_ups,
    make_puzzle,
    write_splits,
)
from stagewise.models.evaluation import read_items
from stagewise.models.stages import STAGES, Stage, parse_answer


@cache
def _sample(count: int = 1500, seed: int = 11) -> tuple[Puzzle, ...]:
    rng = random.Random(seed)
    return tuple(make_puzzle(rng, f"f-{i}") for i in range(count))


def _count(puzzle: Puzzle, colour: str | None, shape: str | None) -> int:
    return sum((colour in (None, o.colour)) and (shape in (None, o.shape))
               for o in puzzle.scene.objects)


def test_every_puzzle_can_be_asked_why_and_the_answers_parse():
    for puzzle in _sample():
        found = follow_ups(puzzle)
        assert found and found[-1].kind == "why"
        for follow in found:
            parsed = parse_answer(follow_up_text(follow))
            assert parsed.complete and not parsed.stray
            assert [parsed.stages[s] for s in STAGES] == [follow.stages[s] for s in STAGES]
            assert parsed.conclusion == follow.answer
            assert all("\n" not in follow.stages[s] for s in STAGES)


def test_and_follow_ups_ask_the_same_about_other_objects():
    checked = Counter()
    for puzzle in _sample():
        for follow in (f for f in follow_ups(puzzle) if f.kind == "and"):
            if puzzle.spec.form == "count":
                match = re.fullmatch(r"And the (?:(\w+) )?(\w+)s\?", follow.question)
                assert match, follow.question
                colour, shape = match[1], match[2]
                shape = None if shape == "shape" else shape
                assert follow.answer == str(_count(puzzle, colour, shape))
                checked["count"] += 1
                continue
            cell = re.fullmatch(r"And the one at the (.+)\?", follow.question)
            shape = re.fullmatch(r"And the (circle|square|triangle)\?", follow.question)
            if cell:
                (obj,) = [o for o in puzzle.scene.objects if o.position == cell[1]]
            else:
                (obj,) = [o for o in puzzle.scene.objects if o.shape == shape[1]]
            assert obj.cell != puzzle.spec.cell
            form = puzzle.spec.form
            assert follow.answer == {"color": obj.colour, "shape": obj.shape,
                                     "size": obj.size}[form]
            checked[form] += 1
    assert min(checked.values()) >= 20 and set(checked) == {"count", "color", "shape", "size"}


def test_removing_one_leaves_the_count_less_one():
    removed = [(p, f) for p in _sample() for f in follow_ups(p) if f.kind == "remove"]
    assert len(removed) >= 50
    for puzzle, follow in removed:
        assert puzzle.spec.form == "count" and not puzzle.spec.options
        assert follow.answer == str(int(puzzle.answer) - 1)
        n = int(puzzle.answer)
        assert follow.stages[Stage.REASONING].endswith(f"{n} - 1 = {n - 1}.")
        assert follow.stages[Stage.CAPTION] == puzzle.stages[Stage.CAPTION]


def test_why_gives_the_facts_the_first_answer_follows_from():
    for puzzle in _sample()[:400]:
        why = follow_ups(puzzle)[-1]
        assert why.question == "Why?"
        assert why.answer.startswith("Because ") and why.answer.endswith(".")
        assert f"the answer is {puzzle.answer}." in why.stages[Stage.SUMMARY]
        assert why.stages[Stage.REASONING] == puzzle.stages[Stage.REASONING]
        fact = why.answer.removeprefix("Because ").rstrip(".")
        if puzzle.spec.form in ("color", "shape", "size"):  # the object asked about, in full
            obj = puzzle.scene.at(puzzle.spec.cell)
            assert fact.endswith(f"is a {obj.size} {obj.colour} {obj.shape}")
        if puzzle.spec.form == "count" and not puzzle.spec.options:
            assert fact.split()[2] in (puzzle.answer, "no")


def test_drawn_follow_ups_mix_the_kinds_and_are_deterministic():
    def draw_all(seed: int) -> list[str]:
        rng = random.Random(seed)
        return [follow_up(p, rng).question for p in _sample()]

    assert draw_all(3) == draw_all(3)
    rng = random.Random(3)
    kinds = Counter(follow_up(p, rng).kind for p in _sample())
    assert set(kinds) == set(FOLLOW_UP_KINDS)


def test_written_follow_ups_are_second_turns_eval_reads(tmp_path):
    plain = write_splits(tmp_path / "plain", {"test": 12}, seed=5, workers=1)
    paths = write_splits(tmp_path / "follow", {"test": 12}, seed=5, workers=1,
                         follow_ups=True)
    with_follow = [json.loads(line) for line in paths["test"].read_text().splitlines()]
    without = [json.loads(line) for line in plain["test"].read_text().splitlines()]
    for a, b in zip(with_follow, without, strict=True):  # the same puzzles
        assert a["conversations"][:2] == b["conversations"]
        assert [t["from"] for t in a["conversations"]] == ["human", "gpt", "human", "gpt"]
    items = read_items(paths["test"])
    for item, rec in zip(items, with_follow, strict=True):
        (follow,) = item.follow_ups
        assert follow.question == rec["conversations"][2]["value"]
        assert follow.answers == (parse_answer(rec["conversations"][3]["value"]).conclusion,)
