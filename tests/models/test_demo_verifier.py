"""The shipped demo verifier: its files beside the demo pair, parity through llama.cpp, real
scores on validation puzzles, and the demo's measured default selection that names it."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stagewise.models.evaluation import read_items
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.gguf_check import check_pair
from stagewise.models.library.demo import (
    DEMO_VERIFIER,
    DEMO_VERIFIER_MMPROJ,
    demo_pair,
    demo_test_split,
    demo_verifier,
)
from stagewise.models.reasoning.prm_verifier import SYSTEM_KEY, PrmVerifier, step_turns
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.session import DEFAULT_SCORER_KEY, DEFAULT_SELECT_KEY, Session, plan

MAX_BOTH_PAIRS_BYTES = 12 * 1024 * 1024  # issue 27: the demo pair and its verifier together


@pytest.fixture(scope="module")
def shipped():
    pair = demo_verifier()
    assert pair is not None, "the demo verifier is missing from models/data/demo/"
    return pair


def _size(*paths: Path) -> int:
    return sum(p.stat().st_size for p in paths)


def test_it_ships_beside_the_demo_pair_small_and_valid(shipped):
    demo = demo_pair()
    assert shipped.model.name == DEMO_VERIFIER and shipped.mmproj.name == DEMO_VERIFIER_MMPROJ
    assert shipped.model.parent == demo.model.parent
    assert _size(demo.model, demo.mmproj, shipped.model, shipped.mmproj) <= MAX_BOTH_PAIRS_BYTES
    check_pair(shipped.model, shipped.mmproj)
    with Engine(shipped.model, shipped.mmproj, EngineSettings(n_seq_max=2, threads=1)) as e:
        verifier = PrmVerifier(e)  # raises unless "+" and "-" are single tokens
        assert verifier.system == e.meta(SYSTEM_KEY) and "+" in verifier.system
        assert verifier.good != verifier.bad


def test_shipped_verifier_matches_pytorch_on_its_prompt(shipped):
    pytest.importorskip("torch")
    from stagewise.models.recipes.demo.export import load_pair
    from stagewise.models.recipes.demo.parity import llama_logits, torch_logits

    model = load_pair(shipped.model, shipped.mmproj)
    with Engine(shipped.model, shipped.mmproj, EngineSettings(n_seq_max=1, threads=1)) as e:
        system = e.meta(SYSTEM_KEY)
    for item in read_items(demo_test_split(), limit=2):
        pixels = np.asarray(Image.open(item.image).convert("RGB"))
        steps = [item.stages[s] for s in item.stages]
        turns = step_turns(item.question, steps)
        ll = llama_logits(shipped.model, shipped.mmproj, pixels, turns[-1][0],
                          earlier=turns[:-1], system=system)
        expected = torch_logits(model, pixels, ll)
        spread = float(expected.max() - expected.min())
        assert np.abs(ll.logits - expected).max() < 0.02 * spread
        top = [int(i) for i in itertools.islice(np.argsort(-expected), 3)]
        assert int(ll.logits.argmax()) == top[0]


def test_it_scores_right_stages_above_hard_negatives_on_validation_puzzles(shipped):
    """Each stage's gold content against one that differs in one fact, on 6 validation
    puzzles, through the prm selection as the search calls it (measured on 300: README)."""
    from stagewise.models.recipes.demo.judge_pairs import judge_pairs, recipe_puzzles, summarise

    settings = SearchSettings(select="prm", scorer_model=shipped.model)
    load = plan(None, None, EngineSettings(n_ctx=4096, threads=1), settings)
    with Session(load) as session:
        verdicts = list(judge_pairs(session, recipe_puzzles("val", 0, 6), "prm", settings))
    stages = [row for row in summarise(verdicts) if row.unit != "answer"]
    assert len(stages) == 4 and all(row.total == 6 for row in stages)
    assert sum(row.right for row in stages) >= 20, [(r.unit, r.right) for r in stages]
    assert sum(row.right_called + row.wrong_called for row in stages) >= 38  # of 48


def test_the_demo_carries_its_measured_default_selection(shipped):
    """The demo model's metadata names the selection measured best on validation, and its
    second model beside it where it needs one: the window and ask use it unasked."""
    demo = demo_pair()
    with Engine(demo.model, demo.mmproj, EngineSettings(n_seq_max=1, threads=1)) as e:
        chosen, scorer = e.meta(DEFAULT_SELECT_KEY), e.meta(DEFAULT_SCORER_KEY)
    assert chosen
    load = plan(None, None, EngineSettings(n_ctx=4096, threads=1))
    with Session(load) as session:
        settled = session.settled(SearchSettings(beam=4))
        assert settled.select == chosen
        if scorer:
            assert settled.scorer_model == demo.model.parent / scorer
            assert session.verifier(settled) is not None  # its projector found beside it
