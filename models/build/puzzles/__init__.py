"""Synthetic visual puzzles with templated four-stage answers, in LLaVA-CoT-100k format.

Simple scenes (coloured circles, squares and triangles on a 3×3 grid) and questions about
them (counting, attributes, spatial relations, comparisons, arithmetic, multiple choice),
for training a tiny vision-language model and its judge.
"""

from stagewise.models.build.puzzles.dataset import (
    DEFAULT_SIZES,
    follow_up_of,
    generate_split,
    puzzle_key,
    record,
    write_splits,
)
from stagewise.models.build.puzzles.follow_ups import (
    FOLLOW_UP_KINDS,
    FollowUp,
    follow_up,
    follow_up_text,
    follow_ups,
)
from stagewise.models.build.puzzles.questions import (
    CHOICE_INSTRUCTION,
    KINDS,
    Filter,
    Puzzle,
    QuestionSpec,
    answer_text,
    render,
)
from stagewise.models.build.puzzles.random_questions import make_puzzle, make_spec
from stagewise.models.build.puzzles.scenes import (
    CANVAS,
    CELL,
    CELL_NAMES,
    COLOURS,
    SHAPES,
    SIZES,
    Clutter,
    Obj,
    Scene,
    draw,
    random_scene,
)
from stagewise.models.build.puzzles.wrong_stages import (
    Corruption,
    corrupt,
    corrupt_with_fact,
    verdict_text,
)

__all__ = [
    "CANVAS",
    "CELL",
    "CELL_NAMES",
    "CHOICE_INSTRUCTION",
    "COLOURS",
    "DEFAULT_SIZES",
    "FOLLOW_UP_KINDS",
    "KINDS",
    "SHAPES",
    "SIZES",
    "Clutter",
    "Corruption",
    "Filter",
    "FollowUp",
    "Obj",
    "Puzzle",
    "QuestionSpec",
    "Scene",
    "answer_text",
    "corrupt",
    "corrupt_with_fact",
    "draw",
    "follow_up",
    "follow_up_of",
    "follow_up_text",
    "follow_ups",
    "generate_split",
    "make_puzzle",
    "make_spec",
    "puzzle_key",
    "random_scene",
    "record",
    "render",
    "verdict_text",
    "write_splits",
]
