"""The offline grader on real GGUF models through real llama.cpp: text-only replies, and the
grading path that reads them. These test the path, not how well a model grades: the tiny
model's weights are random and the demo model knows only coloured shapes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_cpp import llama_cpp as lc

from stagewise.models.build.tiny_vlm import TinyPair
from stagewise.models.errors import EngineError, StagewiseError
from stagewise.models.evaluation.data import EvalItem
from stagewise.models.evaluation.grader import (
    REPLY_TOKENS,
    LocalGrader,
    grade_report,
    plan_grader,
)
from stagewise.models.evaluation.grader_prompts import choice_prompt
from stagewise.models.evaluation.results import EvalReport, ItemResult, StrategyReport, make_configs
from stagewise.models.evaluation.vlmeval_rules import can_infer
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.sampling_settings import SamplingSettings
from stagewise.models.inference.text_generation import generate_text
from stagewise.models.library.demo import demo_pair
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.session import Session

OPTIONS = {"A": "red", "B": "dark blue", "C": "green"}


def test_a_text_only_reply_is_greedy_bounded_and_leaves_its_sequence_empty(engine: Engine):
    first = generate_text(engine, "Name a colour.", max_tokens=12)
    assert first == generate_text(engine, "Name a colour.", max_tokens=12)  # greedy
    assert len(engine.tokenize(first)) <= 12 + 2  # re-tokenizing text may merge or split
    longer = generate_text(engine, "Name a colour.", max_tokens=24)
    assert longer.startswith(first.rstrip()[:5])
    sampled = {generate_text(engine, "Name a colour.", max_tokens=12, seed=seed,
                             sampling=SamplingSettings(temperature=1.5, top_p=1.0, top_k=0))
               for seed in range(4)}
    assert len(sampled) > 1  # a temperature and a seed: the replies differ
    assert generate_text(engine, "Name a colour.", max_tokens=12, seq=3) == first
    memory = lc.llama_get_memory(engine.ctx)
    assert lc.llama_memory_seq_pos_max(memory, 0) == lc.llama_memory_seq_pos_max(memory, 3) \
        == -1  # the sequences are left empty
    with pytest.raises(EngineError, match="context holds"):
        generate_text(engine, "word " * 5000, max_tokens=4)


@pytest.fixture(scope="module")
def demo_grader() -> Iterator[LocalGrader]:
    pair = demo_pair()
    assert pair is not None
    with Session(plan_grader(pair.model, pair.mmproj, threads=2)) as session:
        yield LocalGrader(session.engine)


def test_grading_asks_the_grader_only_what_matching_cannot_read(demo_grader: LocalGrader):
    items = [EvalItem(f"MMStar-{i}", Path("x.png"), "Q", ("B",), benchmark="mcq",
                      fields={"index": str(i), "question": "What colour is the ball?",
                              **OPTIONS}) for i in range(2)]
    config = make_configs(["single"], 1, "judge")[0]
    results = (ItemResult("MMStar-0", "", "single", "B", True, 1.0, 5),
               ItemResult("MMStar-1", "", "single", "a bluish one", False, 1.0, 5))
    report = EvalReport((StrategyReport(config, results),), 2, "finished", SearchSettings())
    graded = grade_report(report, items, demo_grader, grader="demo")
    matched = graded.grades[("single", "MMStar-0")]
    assert (matched.extracted, matched.asked, matched.output) == ("B", 0, "")
    asked = graded.grades[("single", "MMStar-1")]
    reply = demo_grader.reply(choice_prompt("What colour is the ball?", OPTIONS,
                                            "a bluish one"),
                              max_tokens=REPLY_TOKENS, temperature=0.0, seed=1)
    assert asked.asked == 1 and asked.output == reply and reply  # the model's real reply
    assert asked.extracted == (can_infer(reply, OPTIONS) or "")
    assert graded.report.strategies[0].items[1].correct == (asked.extracted == "B")
    assert (graded.grader, graded.asked) == ("demo", 1)


def test_a_grader_is_planned_like_any_model(tiny_pair: TinyPair, tmp_path: Path):
    planned = plan_grader(tiny_pair.model, tiny_pair.mmproj, threads=1)
    assert planned.engine.n_ctx >= 8192 and planned.fit.fits
    alone = tmp_path / "text-only.gguf"
    shutil.copy(tiny_pair.model, alone)
    with pytest.raises(StagewiseError, match="no projector"):
        plan_grader(alone, None)
