"""Synthetic puzzles: determinism, the LLaVA-CoT record format, and answers true to the image."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from functools import cache

import numpy as np
import pytest

from stagewise.models.build.puzzles import (
    CANVAS,
    CELL_NAMES,
    CHOICE_INSTRUCTION,
    COLOURS,
    KINDS,
    SHAPES,
    Puzzle,
    answer_text,
    corrupt,
    corrupt_with_fact,
    draw,
    make_puzzle,
    puzzle_key,
    verdict_text,
    write_splits,
)
from stagewise.models.build.puzzles.dataset import generate_split
from stagewise.models.build.puzzles.questions import _truth
from stagewise.models.stages import STAGES, Stage, parse_answer


@cache
def _sample(count: int = 2000, seed: int = 7) -> tuple[Puzzle, ...]:
    rng = random.Random(seed)
    return tuple(make_puzzle(rng, f"s-{i}") for i in range(count))


def _by_form(form: str, options: bool = False) -> list[Puzzle]:
    found = [p for p in _sample() if p.spec.form == form and bool(p.spec.options) == options]
    assert len(found) >= 20, form
    return found


def _count(puzzle: Puzzle, colour: str | None, shape: str | None) -> int:
    return sum((colour in (None, o.colour)) and (shape in (None, o.shape))
               for o in puzzle.scene.objects)


def _parse_filter(text: str) -> tuple[str | None, str | None]:
    """``"red circles"`` -> (red, circle); ``"shapes"`` -> (None, None)."""
    words = text.removesuffix("s").split()
    colour = words[0] if words[0] in COLOURS else None
    shape = words[-1] if words[-1] in SHAPES else None
    return colour, shape


def _find(puzzle: Puzzle, desc: str):
    colour, shape = desc.split()
    (obj,) = [o for o in puzzle.scene.objects if o.colour == colour and o.shape == shape]
    return obj


def test_same_seed_same_bytes(tmp_path):
    sizes = {"train": 30, "val": 5, "test": 10}
    first = write_splits(tmp_path / "a", sizes, seed=3, workers=1)
    second = write_splits(tmp_path / "b", sizes, seed=3, workers=1)
    for split in sizes:
        assert first[split].read_bytes() == second[split].read_bytes()
    names = sorted(p.name for p in (tmp_path / "a" / "images").iterdir())
    assert len(names) == 45
    for name in names:
        assert (tmp_path / "a" / "images" / name).read_bytes() == \
            (tmp_path / "b" / "images" / name).read_bytes()
    other = write_splits(tmp_path / "c", sizes, seed=4, workers=1)
    assert other["train"].read_bytes() != first["train"].read_bytes()


def test_records_have_exactly_the_llava_cot_format(tmp_path):
    sizes = {"train": 40, "val": 5, "test": 12}
    paths = write_splits(tmp_path, sizes, seed=1, workers=1)
    for split, size in sizes.items():
        lines = paths[split].read_text(encoding="utf-8").splitlines()
        assert len(lines) == size
        for index, line in enumerate(lines):
            rec = json.loads(line)
            assert list(rec) == ["id", "image", "conversations"]
            assert re.fullmatch(rf"{split}-{index:06d}-({'|'.join(KINDS)})", rec["id"])
            assert rec["image"] == f"images/{rec['id']}.png"
            assert (tmp_path / rec["image"]).is_file()
            human, gpt = rec["conversations"]
            assert list(human) == ["from", "value"] and human["from"] == "human"
            assert list(gpt) == ["from", "value"] and gpt["from"] == "gpt"
            parts = re.fullmatch(
                r"<SUMMARY> (.+) </SUMMARY>\n\n<CAPTION> (.+) </CAPTION>\n\n"
                r"<REASONING> (.+) </REASONING>\n\n<CONCLUSION> (.+) </CONCLUSION>",
                gpt["value"], re.DOTALL)
            assert parts, gpt["value"]
    assert not list(tmp_path.glob("*.tmp"))


def test_answers_parse_into_four_stages():
    for puzzle in _sample():
        parsed = parse_answer(answer_text(puzzle))
        assert parsed.complete and not parsed.stray
        for stage in STAGES:
            assert parsed.stages[stage] == puzzle.stages[stage] != ""
            assert "\n" not in puzzle.stages[stage]
        assert parsed.conclusion == puzzle.answer == puzzle.stages[Stage.CONCLUSION]


def test_summary_never_states_the_answer():
    for puzzle in _sample():
        if puzzle.spec.form in ("count", "sum", "diff", "spatial", "more") or puzzle.spec.options:
            continue
        words = set(puzzle.stages[Stage.SUMMARY].rstrip(".").split())
        if puzzle.spec.form in ("color", "size"):
            assert puzzle.answer not in words


def test_drawn_image_shows_each_object_at_its_centre():
    for puzzle in _sample()[:300]:
        pixels = np.asarray(draw(puzzle.scene))
        assert pixels.shape == (CANVAS, CANVAS, 3)
        for obj in puzzle.scene.objects:
            assert tuple(pixels[obj.y, obj.x]) == COLOURS[obj.colour]
            assert obj.cell == (obj.y // 32) * 3 + obj.x // 32
        # each colour covers roughly its objects' area (small ~12 px, large ~22 px across)
        for name, rgb in COLOURS.items():
            area = int(np.all(pixels == rgb, axis=-1).sum())
            objs = [o for o in puzzle.scene.objects if o.colour == name]
            if not objs:
                assert area == 0
            else:
                expected = sum({"small": 144, "large": 484}[o.size] for o in objs)
                assert expected * 0.4 <= area <= expected * 1.05


def test_scene_objects_are_row_major_one_per_cell():
    for puzzle in _sample():
        cells = [o.cell for o in puzzle.scene.objects]
        assert cells == sorted(set(cells)) and 2 <= len(cells) <= 6


def test_counting_answers_match_the_scene():
    for puzzle in _by_form("count"):
        plural = re.fullmatch(r"How many (.+) are there\?", puzzle.question).group(1)
        n = _count(puzzle, *_parse_filter(plural))
        assert puzzle.answer == str(n)
        if n == 0:
            assert puzzle.stages[Stage.CAPTION] == f"The image shows no {plural}."
        else:
            assert puzzle.stages[Stage.CAPTION].count(" at the ") == n


def test_arithmetic_answers_match_the_scene():
    for puzzle in _by_form("sum") + _by_form("diff"):
        m = re.fullmatch(r"How many (?:more )?(.+?) (and|than) (.+?) (?:are there in total|are "
                         r"there)\?", puzzle.question)
        na = _count(puzzle, *_parse_filter(m.group(1)))
        nb = _count(puzzle, *_parse_filter(m.group(3)))
        if m.group(2) == "and":
            assert puzzle.answer == str(na + nb)
            assert f"{na} + {nb} = {na + nb}." in puzzle.stages[Stage.REASONING]
        else:
            assert na >= nb and puzzle.answer == str(na - nb)
            assert f"{na} - {nb} = {na - nb}." in puzzle.stages[Stage.REASONING]


def test_spatial_answers_match_the_cells():
    answers = Counter()
    for puzzle in _by_form("spatial"):
        m = re.fullmatch(r"Is the (\w+ \w+) (to the left of|to the right of|above|below) the "
                         r"(\w+ \w+)\?", puzzle.question)
        p, q = _find(puzzle, m.group(1)), _find(puzzle, m.group(3))
        holds = {"to the left of": p.col < q.col, "to the right of": p.col > q.col,
                 "above": p.row < q.row, "below": p.row > q.row}[m.group(2)]
        assert puzzle.answer == ("Yes" if holds else "No")
        caption = puzzle.stages[Stage.CAPTION]
        assert caption.count(" at the ") == 2 and f"at the {p.position}" in caption
        answers[puzzle.answer] += 1
    assert abs(answers["Yes"] - answers["No"]) < 0.3 * sum(answers.values())


def test_compare_answers_match_the_scene():
    for puzzle in _by_form("more"):
        m = re.fullmatch(r"Are there more (.+) than (.+)\?", puzzle.question)
        na = _count(puzzle, *_parse_filter(m.group(1)))
        nb = _count(puzzle, *_parse_filter(m.group(2)))
        assert puzzle.answer == ("Yes" if na > nb else "No")
    for puzzle in _by_form("bigger"):
        m = re.fullmatch(r"Which is bigger, the (\w+ \w+) or the (\w+ \w+)\?", puzzle.question)
        p, q = _find(puzzle, m.group(1)), _find(puzzle, m.group(2))
        assert p.size != q.size
        assert puzzle.answer == f"the {(p if p.size == 'large' else q).description}"


def test_attribute_answers_match_the_object_at_the_position():
    for form in ("color", "shape", "size"):
        for puzzle in _by_form(form):
            position = re.search(r"at the (.+)\?", puzzle.question).group(1)
            obj = puzzle.scene.objects[[o.position for o in puzzle.scene.objects].index(position)]
            assert puzzle.answer == {"color": obj.colour, "shape": obj.shape,
                                     "size": obj.size}[form]
            assert puzzle.stages[Stage.CAPTION] == f"The image shows {obj.phrase}."


def test_choice_letter_points_at_the_right_option():
    for form in ("color", "shape", "count"):
        for puzzle in _by_form(form, options=True):
            lines = puzzle.question.split("\n")
            assert lines[-1] == CHOICE_INSTRUCTION
            options = dict(line.split(". ", 1) for line in lines[1:-1])
            assert list(options) == list("ABCD"[: len(options)]) and 3 <= len(options) <= 4
            assert len(set(options.values())) == len(options)
            value = options[puzzle.answer]
            if form == "count":
                plural = re.fullmatch(r"How many (.+) are there\?", lines[0]).group(1)
                assert value == str(_count(puzzle, *_parse_filter(plural)))
            else:
                position = re.search(r"at the (.+)\?", lines[0]).group(1)
                (obj,) = [o for o in puzzle.scene.objects if o.position == position]
                assert value == (obj.colour if form == "color" else obj.shape)


def test_kinds_and_yes_no_are_balanced():
    kinds = Counter(p.kind for p in _sample())
    assert set(kinds) == set(KINDS)
    for kind in KINDS:
        assert 0.10 <= kinds[kind] / len(_sample()) <= 0.25, kinds
    yes_no = Counter(p.answer for p in _sample() if p.answer in ("Yes", "No"))
    assert abs(yes_no["Yes"] - yes_no["No"]) < 0.2 * sum(yes_no.values())


def _answer_type(puzzle: Puzzle, answer: str) -> str:
    if puzzle.spec.options:
        return "letter" if answer in "ABCD"[: len(puzzle.spec.options)] else "?"
    for name, values in (("number", [str(n) for n in range(20)]), ("yes", ["Yes", "No"]),
                         ("colour", list(COLOURS)), ("shape", list(SHAPES)),
                         ("size", ["small", "large"])):
        if answer in values:
            return name
    return "object" if re.fullmatch(r"the \w+ \w+", answer) else "?"


def test_corrupt_gives_a_different_wrong_stage_of_the_same_form():
    rng = random.Random(0)
    for puzzle in _sample()[:600]:
        for stage in STAGES:
            wrong = corrupt(puzzle, stage, rng)
            assert wrong and wrong != puzzle.stages[stage] and "\n" not in wrong
        wrong = corrupt(puzzle, Stage.CONCLUSION, rng)
        assert _answer_type(puzzle, wrong) == _answer_type(puzzle, puzzle.answer) != "?"
        caption = corrupt(puzzle, Stage.CAPTION, rng)
        assert caption.startswith("The image shows ") and caption.endswith(".")
        summary = corrupt(puzzle, Stage.SUMMARY, rng)
        assert summary.startswith("The question asks ")
        reasoning = corrupt(puzzle, Stage.REASONING, rng)
        right = puzzle.stages[Stage.REASONING]
        # same facts first, a different claim after
        assert reasoning.split(" ")[:3] == right.split(" ")[:3]
        if puzzle.spec.form in ("sum", "diff") and not puzzle.spec.options:
            assert not reasoning.endswith(f"= {puzzle.answer}.")


def test_corrupt_is_deterministic():
    puzzle = _sample()[5]
    first = [corrupt(puzzle, s, random.Random(9)) for s in STAGES]
    assert first == [corrupt(puzzle, s, random.Random(9)) for s in STAGES]


def _caption_fact_holds(fact: str, scene) -> bool:
    """Reads a caption fact back against the scene it was made from."""
    cell = {name: i for i, name in enumerate(CELL_NAMES)}
    names = "|".join(sorted(CELL_NAMES, key=len, reverse=True))
    if m := re.fullmatch(rf"nothing is at the ({names})", fact):
        return scene.at(cell[m[1]]) is None
    if m := re.fullmatch(rf"there is a (\w+) (\w+) (\w+) at the ({names})", fact):
        obj = scene.at(cell[m[4]])
        return obj is not None and (obj.size, obj.colour, obj.shape) == m.group(1, 2, 3)
    if m := re.fullmatch(rf"the (\w+) (\w+) is at the ({names})", fact):
        obj = scene.at(cell[m[3]])
        return obj is not None and (obj.colour, obj.shape) == m.group(1, 2)
    if m := re.fullmatch(rf"the (\w+) at the ({names}) is (\w+)", fact):
        obj = scene.at(cell[m[2]])
        return obj is not None and (obj.shape, obj.colour) == m.group(1, 3)
    if m := re.fullmatch(rf"the object at the ({names}) is a (\w+)", fact):
        obj = scene.at(cell[m[1]])
        return obj is not None and obj.shape == m[2]
    if m := re.fullmatch(rf"the (\w+) (\w+) at the ({names}) is (\w+)", fact):
        obj = scene.at(cell[m[3]])
        return obj is not None and (obj.colour, obj.shape, obj.size) == m.group(1, 2, 4)
    raise AssertionError(f"not a caption fact: {fact!r}")


def test_each_wrong_stage_comes_with_the_true_fact_it_gets_wrong():
    rng = random.Random(4)
    for puzzle in _sample()[:400]:
        for stage in STAGES:
            broken = corrupt_with_fact(puzzle, stage, rng)
            fact, right = broken.fact, puzzle.stages[stage]
            assert fact and not any(c in fact for c in ",.\n"), fact
            if stage is Stage.CAPTION:
                assert _caption_fact_holds(fact, puzzle.scene), (fact, right)
            elif stage is Stage.SUMMARY:
                def bare(text: str) -> str:
                    return text.lower().replace(",", "")

                assert bare(right).split(". ")[0] == fact != bare(broken.wrong).split(". ")[0]
            elif stage is Stage.CONCLUSION:
                assert fact == f"the reasoning gives {right}"
            else:
                assert fact == f"the description gives {_truth(puzzle.spec, puzzle.scene)}"


def test_a_verdict_states_the_fact_before_the_choice():
    assert verdict_text("the circle at the top is red", 2) == \
        "Since the circle at the top is red, I choose response 2."
    with pytest.raises(ValueError):
        verdict_text("a fact", 3)
    with pytest.raises(ValueError):
        verdict_text("red, not blue", 1)


def test_splits_share_no_scene_and_question():
    seen: set[str] = set()
    test = generate_split("test", 300, 0, seen)
    train = generate_split("train", 300, 0, seen)
    keys = {puzzle_key(p) for p in test}
    assert len(keys) == 300 and not keys & {puzzle_key(p) for p in train}
    # a train puzzle equal to a test one is dropped and drawn again
    clash: set[str] = {puzzle_key(p) for p in generate_split("train", 5, 0)}
    again = generate_split("train", 5, 0, clash)
    assert not {puzzle_key(p) for p in again} & {puzzle_key(p) for p in generate_split(
        "train", 5, 0)}


def test_positions_use_the_cell_names():
    for puzzle in _sample()[:200]:
        for phrase in re.findall(r"at the ([a-z ]+?)(?:,| and |\.)",
                                 puzzle.stages[Stage.CAPTION]):
            assert phrase in CELL_NAMES
