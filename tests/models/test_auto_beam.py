"""Beam "auto" on a real engine: a single pass first, then the widest width within twice
its cost, from measured step times and then from real answers."""

from __future__ import annotations

import llama_cpp as lc
import pytest

from stagewise.models.events import AnswerFinished
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.reasoning.auto_beam import (
    COST_LIMIT,
    WIDTHS,
    AutoBeam,
    answer_cost,
    step_seconds,
)
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.session import Session, plan


@pytest.fixture(scope="module")
def session(tiny_pair):
    with Session(plan(tiny_pair.model, tiny_pair.mmproj, EngineSettings(threads=2))) as s:
        yield s


def answer(session, image, beam):
    settings = SearchSettings(beam=beam, select="logprob", max_stage_tokens=6, seed=3)
    for event in session.ask(image, "How many circles?", settings):
        if isinstance(event, AnswerFinished):
            return event.result
    raise AssertionError("no answer")


def expected_beam(costs):
    return max(n for n in WIDTHS if costs.get(n, float("inf")) <= COST_LIMIT)


def test_auto_measures_then_chooses_the_widest_within_the_limit(session, image):
    auto = AutoBeam()
    first = auto.choice()
    assert first.beam == 1 and not auto.ready and "single pass first" in first.reason

    single = answer(session, image, 1)
    assert answer_cost(single) > 0
    choice = auto.observe(single, session.engine)
    assert auto.ready
    assert set(choice.costs) == set(WIDTHS) and all(c > 0 for c in choice.costs.values())
    assert choice.beam == expected_beam(choice.costs)
    assert f"beam {choice.beam} (auto" in choice.reason and "predicted" in choice.reason

    wide = answer(session, image, 4)
    after = auto.observe(wide, session.engine)
    assert "4 candidates cost" in after.reason and "(measured)" in after.reason
    assert after.costs[4] == pytest.approx(answer_cost(wide) / answer_cost(single))
    assert after.beam == expected_beam(after.costs)


def test_the_step_probe_leaves_the_cache_as_it_was(session, image):
    answer(session, image, 1)  # the image and prompt are kept in the cache
    engine = session.engine
    memory = lc.llama_get_memory(engine.ctx)
    before = [lc.llama_memory_seq_pos_max(memory, s) for s in range(engine.settings.n_seq_max)]
    seconds = step_seconds(engine)
    after = [lc.llama_memory_seq_pos_max(memory, s) for s in range(engine.settings.n_seq_max)]
    assert after == before
    assert set(seconds) == set(WIDTHS) and all(t > 0 for t in seconds.values())
